"""gunicorn's gthread worker, made to stop gracefully under load: nothing queued is reset, and idle
keep-alive connections do not hold the stop up."""

from __future__ import annotations

from gunicorn.workers.gthread import TConn, ThreadWorker


class GracefulThreadWorker(ThreadWorker):  # type: ignore[misc]
    """Two changes to gunicorn 26's shutdown, both measured by tests/runtime/test_worker_class.py:

    - On stop, gthread only stops polling its listener; the socket stays open until the worker
      exits, so connections the kernel keeps queueing meanwhile are reset at exit: requests lost
      under load. Here the queue is drained into the thread pool and the listener closed at
      once, so later connections are refused (the client or the load balancer retries elsewhere).
    - The shutdown loop waits up to graceful_timeout for an event before it looks at idle
      keep-alive connections, so one idle client holds every stop for the full 30 s. Here idle
      connections are closed at once and the loop wakes often.
    Requests in flight still get the whole graceful_timeout.
    """

    def set_accept_enabled(self, enabled: bool) -> None:
        stopping = not enabled and not self.alive and self._accepting
        super().set_accept_enabled(enabled)
        if stopping:
            for listener in self.sockets:
                self._drain(listener)
                listener.close()

    def _drain(self, listener: object) -> None:
        listener.setblocking(False)  # type: ignore[attr-defined]
        while True:
            try:
                client_sock, client_addr = listener.accept()  # type: ignore[attr-defined]
            except OSError:  # BlockingIOError: the queue is empty
                return
            self.nr_conns += 1
            client_sock.setblocking(True)
            self.enqueue_req(TConn(self.cfg, client_sock, client_addr, listener.getsockname()))  # type: ignore[attr-defined]

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        super().wait_for_and_dispatch_events(timeout if self.alive else min(timeout, 0.1))

    def murder_keepalived(self) -> None:
        if not self.alive:
            for conn in self.keepalived_conns:
                conn.timeout = 0
        super().murder_keepalived()
