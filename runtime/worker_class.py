"""gunicorn's gthread worker, except that idle keep-alive connections do not stall a graceful stop."""

from __future__ import annotations

from gunicorn.workers.gthread import ThreadWorker


class GracefulThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn 26's shutdown loop waits up to graceful_timeout for an event before it looks at idle
    keep-alive connections, so one idle client (a load balancer's pooled connection) holds every
    stop for the full 30 s. Here, once stopping, idle connections are closed at once and the loop
    wakes often; requests in flight still finish within graceful_timeout."""

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        super().wait_for_and_dispatch_events(timeout if self.alive else min(timeout, 0.1))

    def murder_keepalived(self) -> None:
        if not self.alive:
            for conn in self.keepalived_conns:
                conn.timeout = 0
        super().murder_keepalived()
