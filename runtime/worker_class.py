"""gunicorn worker classes: the gthread worker made to stop gracefully under load (nothing queued is
reset, idle keep-alive connections do not hold the stop up), and the ASGI worker for the gateway."""

from __future__ import annotations

import asyncio
from typing import Any

import gunicorn.asgi.websocket
from gunicorn.asgi.websocket import CLOSE_MESSAGE_TOO_BIG, OPCODE_CLOSE, WebSocketProtocol
from gunicorn.workers.gasgi import ASGIWorker
from gunicorn.workers.gthread import TConn, ThreadWorker

from lib.frames import MAX_FRAME_BYTES


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


class BoundedWebSocketProtocol(WebSocketProtocol):  # type: ignore[misc]
    """gunicorn 26's WebSocket, with the limits a public socket needs: a frame (or a fragmented
    message) over MAX_FRAME_BYTES is refused with 1009 before it is buffered; reading pauses while
    the app is behind (bounded receive queue and buffer), and sending waits for the transport to
    drain, so a client that stops reading fills our bounded outbox and is dropped instead of
    growing memory; a client's close reaches the app. Unmasking is done a word at a time instead of
    a byte at a time."""

    max_frame = MAX_FRAME_BYTES
    max_buffer = 4 * MAX_FRAME_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._receive_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=16)
        self._paused = False

    def feed_data(self, data: bytes) -> None:
        super().feed_data(data)
        if not self._paused and len(self._buffer) > self.max_buffer:
            self._paused = True
            self.transport.pause_reading()

    async def _read_exact(self, n: int) -> bytes | None:
        if n > self.max_frame or sum(len(f) for f in self._fragments) + n > self.max_frame:
            await self._send_close(CLOSE_MESSAGE_TOO_BIG, "frame too large")
            self.transport.close()
            return None
        data: bytes | None = await super()._read_exact(n)
        if self._paused and len(self._buffer) < self.max_buffer // 2:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def _handle_close(self, payload: bytes) -> None:
        # A close without a status code (what a browser's or a Flutter app's close() sends) is
        # answered without one: stock gunicorn echoed 1005, a code RFC 6455 7.4.1 forbids on the
        # wire, and Node's ws, Chromium and dart:io all failed the connection on it.
        if len(payload) < 2 and not getattr(self, "_close_sent", False):
            await self._send_frame(OPCODE_CLOSE, b"")
            self._close_sent = True
        # Stock gunicorn answers a client's close frame but never tells the app, which then waits
        # on receive() forever and keeps the connection (and the client's close) hanging.
        await super()._handle_close(payload)
        await self._receive_queue.put({"type": "websocket.disconnect", "code": self.close_code})

    async def _send_frame(self, opcode: int, payload: bytes | str) -> None:
        await super()._send_frame(opcode, payload)
        flow = getattr(self.transport.get_protocol(), "_flow_control", None)
        if flow is not None:
            await flow.drain()

    def _unmask(self, payload: bytes, masking_key: bytes) -> bytes:
        if not payload:
            return payload
        n = len(payload)
        mask = (masking_key * (n // 4 + 1))[:n]
        return (int.from_bytes(payload, "little") ^ int.from_bytes(mask, "little")).to_bytes(n, "little")


class RealtimeWorker(ASGIWorker):  # type: ignore[misc]
    """gunicorn's native ASGI worker for the gateway: the bounded WebSocket above, and on SIGTERM
    every socket closed with 1001 at once (stock gunicorn would wait out graceful_timeout for
    sockets that never end by themselves), so apps reconnect to another replica."""

    def init_process(self) -> None:
        # gunicorn imports the class when a socket upgrades: replacing the module's name is the seam.
        gunicorn.asgi.websocket.WebSocketProtocol = BoundedWebSocketProtocol
        super().init_process()

    def handle_exit_signal(self) -> None:
        super().handle_exit_signal()
        gateway = getattr(self.asgi, "gateway", None)
        if gateway is not None:
            self.loop.create_task(gateway.shutdown())
