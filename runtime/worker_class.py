"""gunicorn worker classes: the gthread worker made to stop gracefully under load (nothing queued is
reset, idle keep-alive connections do not hold the stop up), and the ASGI worker for the gateway."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
import zlib
from typing import Any

import gunicorn
import gunicorn.asgi.websocket
from gunicorn.asgi.protocol import ASGIProtocol
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


class WebSocketClosed(ConnectionResetError):
    """A send on a socket whose closing handshake has begun (the ASGI spec asks for an OSError)."""


_CONNECTING, _OPEN, _CLOSING, _CLOSED = range(4)
_SKIP = -1  # _check: discard the frame unread
_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
PROTOCOL_ERROR, INVALID_DATA, INTERNAL_ERROR = 1002, 1007, 1011
_EMPTY_BLOCK = b"\x00\x00\xff\xff"  # RFC 7692 7.2.1: stripped by the sender, appended by the receiver
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_DEFLATE_PARAMETERS = frozenset(
    {"server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits", "client_max_window_bits"}
)


def _valid_close_code(code: int) -> bool:
    """RFC 6455 7.4: the codes an endpoint may put on the wire (1004-1006 and 1015 are reserved;
    1012-1014 are IANA-registered and accepted by every client library we know)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _unmask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if not n:
        return payload
    mask = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(mask, "little")).to_bytes(n, "little")


def _header(first: int, n: int) -> bytes:
    if n < 126:
        return bytes((first, n))
    if n < 65536:
        return struct.pack("!BBH", first, 126, n)
    return struct.pack("!BBQ", first, 127, n)


def _deflate_response(offers: str) -> tuple[str, int] | None:
    """RFC 7692: the answer to the first permessage-deflate offer we can take, and the window we
    compress with. We always answer with both no_context_takeover parameters (a server may add
    them to any offer, 7.1.1), so no socket keeps a compressor or decompressor between messages:
    per-socket memory stays what it is without compression."""
    for offer in offers.split(","):
        name, *raw = (part.strip() for part in offer.split(";"))
        if name.lower() != "permessage-deflate":
            continue
        params: dict[str, str | None] = {}
        for item in raw:
            key, eq, value = item.partition("=")
            key = key.strip().lower()
            if key in params:
                params = {"": None}  # a repeated parameter: decline the offer
                break
            params[key] = value.strip().strip('"') if eq else None
        if not set(params) <= _DEFLATE_PARAMETERS:
            continue
        if params.get("server_no_context_takeover") or params.get("client_no_context_takeover"):
            continue  # these carry no value
        window = 15  # the most the client's inflater allows; we compress within min(this, ours)
        answer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        if "server_max_window_bits" in params:
            value = params["server_max_window_bits"] or ""
            # zlib cannot make a raw deflate stream with an 8-bit window: decline that offer.
            if not (value.isdigit() and 9 <= int(value) <= 15 and value == str(int(value))):
                continue
            window = int(value)
            answer += f"; server_max_window_bits={window}"
        bits = params.get("client_max_window_bits")
        if bits is not None and not (bits.isdigit() and 8 <= int(bits) <= 15 and bits == str(int(bits))):
            continue
        return answer, window
    return None


class BoundedWebSocketProtocol(asyncio.Protocol):
    """The gateway's WebSocket protocol (RFC 6455, RFC 7692) under gunicorn's ASGI worker, in place
    of gunicorn's own class, which broke real clients and had no bounds (issue 24): it echoed 1005
    for a close without a code (Node's ws, Chromium and dart:io fail the connection on it), dropped
    the connection (1006) on invalid UTF-8 instead of closing with 1007, accepted fragmented and
    oversize control frames and interleaved data messages, buffered any frame whole before looking
    at its size, never told the app of a client's close, wrote without waiting for the socket to
    drain, and wrote a close frame on a connection it had not upgraded. What holds here
    (tests/runtime/test_gateway_real_clients.py with Node's ws and headless Chromium,
    test_gateway_rfc6455.py and test_gateway_rfc7692.py from a raw socket):

    - A handshake of another version is answered 426, a bad key 400, a close before accept 403 (as
      ASGI says), a fault of the app before accept 500; after accept a fault closes with 1011, an
      app that returns with 1000.
    - A client's close is answered with its code, or without one when it had none; a close with a
      code that is not allowed on the wire or a one-byte payload fails with 1002, a reason that is
      not UTF-8 with 1007. The app hears `websocket.disconnect` with the client's code (1005 when it
      sent none, 1006 when the TCP connection ended without a close frame).
    - A text message that is not UTF-8 closes with 1007; a frame or a fragmented message over
      `max_message` bytes (after inflating) closes with 1009 before its payload is buffered (the
      rest of it is skipped, not kept); unmasked frames, reserved bits or opcodes, a control frame
      over 125 bytes or fragmented, a continuation with no message begun or a data frame inside
      one close with 1002. Fragmented messages are reassembled, with pings between fragments.
    - A ping is answered by a pong carrying its payload.
    - Whoever closes first, the other side's close frame is awaited `close_timeout` seconds (the
      data frames meanwhile are dropped unread); the server then closes the TCP connection, once
      the app has returned (it has heard the disconnect) or close_timeout seconds later.
    - Bounds: at most `queue_size` messages wait for the app, and at most `max_buffer` bytes wait
      to be parsed: then the transport stops reading (TCP pushes back on the client). A send waits
      while the transport is above its write high-water mark, so a client that does not read fills
      the gateway's own bounded outbox (4008) instead of this process's memory; pongs wait too.
    - permessage-deflate (when `compress_from` is set) is accepted when offered, with no context
      kept between messages on either side (no per-socket zlib state), and a message is
      compressed when it is at least `compress_from` bytes (256: receipts and typing are not worth
      it). With `compress_from = None` the offer is declined, as gunicorn's class declined it.

    Private gunicorn API, written against gunicorn 26.2.0 (GUNICORN_TESTED; pyproject.toml allows
    >=26.2,<27, so any upgrade means re-reading gunicorn/asgi/protocol.py): gunicorn constructs the
    class it finds as `gunicorn.asgi.websocket.WebSocketProtocol` at each upgrade (RealtimeWorker
    replaces that name) as `cls(transport, scope, app, log)`, awaits `run()`, then closes the
    transport; its protocol calls `feed_data()` / `feed_eof()` until this class takes the transport
    over with asyncio's public `transport.set_protocol()`, and `connection_lost` is handed back to
    gunicorn's protocol (it counts connections for the graceful stop). No gunicorn method or
    attribute is overridden or read: the frames, the handshake and the ASGI messages are all here.
    """

    __slots__ = (
        "_blocked",
        "_buffer",
        "_close_timer",
        "_closed",
        "_deflate_window",
        "_disconnect",
        "_drain_waiters",
        "_fragment_first",
        "_fragment_size",
        "_fragments",
        "_messages",
        "_parent",
        "_parsing",
        "_reading_paused",
        "_skip",
        "_state",
        "_waiter",
        "_writing_paused",
        "app",
        "log",
        "scope",
        "transport",
    )

    max_message = MAX_FRAME_BYTES
    max_buffer = 4 * MAX_FRAME_BYTES
    queue_size = 16
    close_timeout = 5.0
    # permessage-deflate, measured on the gateway's own frames with 256 here (tests/runtime/
    # test_gateway_rfc7692.py holds the behaviour): a chat message (message.send in, message.sent,
    # message.new and two message.status out) costs this class 21 us of CPU instead of 5, and 749
    # bytes out instead of 977, 190 in instead of 251 from a client that compresses every frame as
    # Chromium does (frames under 256 bytes, receipts and typing, are not worth it). A 4 KiB window
    # at level 1 compresses a 380-byte event as well as zlib's defaults (-34%) in 9 us instead of
    # 20-40 (the default 256 KiB of zlib state is allocated and freed for every message).
    compress_from: int | None = 256
    compress_window_bits = 12
    compress_level = 1
    compress_mem_level = 5

    def __init__(self, transport: asyncio.Transport, scope: dict[str, Any], app: Any, log: Any) -> None:
        self.transport = transport
        self.scope = scope
        self.app = app
        self.log = log
        self._parent = transport.get_protocol()
        transport.set_protocol(self)
        self._state = _CONNECTING
        self._buffer = bytearray()
        self._skip = 0  # bytes of a frame still to be discarded unread (oversize, or after our close)
        self._parsing = False
        self._fragments: list[bytes] = []
        self._fragment_first = 0  # the first byte of the fragmented message's first frame, or 0
        self._fragment_size = 0
        # A list, not a deque: at most queue_size messages wait, and an empty deque is 760 bytes on
        # every idle socket.
        self._messages: list[dict[str, Any]] = [{"type": "websocket.connect"}]
        self._waiter: asyncio.Future[None] | None = None
        self._disconnect: dict[str, Any] | None = None
        self._blocked = False  # the receive queue is full: frames wait in the buffer
        self._reading_paused = False
        self._writing_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._close_timer: asyncio.TimerHandle | None = None
        self._closed: asyncio.Future[None] | None = None
        self._deflate_window = 0  # the negotiated compression window, 0 without permessage-deflate

    # --- asyncio protocol (the transport is ours after the upgrade) --------------------------

    def data_received(self, data: bytes) -> None:
        if self._skip and not self._buffer:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return
            data = data[self._skip :]
            self._skip = 0
        self._buffer += data
        self._parse()

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.feed_eof()
        self._parent.connection_lost(exc)  # gunicorn's bookkeeping (connection count, its task)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._release_writers()
        if self._blocked or self._buffer:
            self._parse()

    def _release_writers(self) -> None:
        self._writing_paused = False
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # gunicorn's protocol calls these until set_protocol takes effect, and feed_eof on its own
    # connection_lost.
    def feed_data(self, data: bytes) -> None:
        self.data_received(data)

    def feed_eof(self) -> None:
        if self._state != _CLOSED:
            self._state = _CLOSED
            self._disconnected(1006)
        self._buffer.clear()
        self._fragments = []
        self._finish()
        self._release_writers()  # a send waiting for the socket to drain returns (the next one raises)

    # --- ASGI ------------------------------------------------------------------------------

    async def run(self) -> None:
        code = 1000
        try:
            try:
                await self.app(self.scope, self.receive, self.send)
            except Exception:
                self.log.exception("Error in WebSocket ASGI application")
                code = INTERNAL_ERROR
            if self._state == _CONNECTING:
                self._reject(500 if code == INTERNAL_ERROR else 403)
            elif self._state == _OPEN:
                self._start_close(code, "")
            if self._state == _CLOSING:
                self._closed = asyncio.get_running_loop().create_future()
                await self._closed
            if self._close_timer is not None:
                self._close_timer.cancel()
        finally:
            # What the app never read goes now: gunicorn's protocol and this one point at each other,
            # so this object lives until a full collection, and a client that queued 16 frames of
            # 16 KiB before its close kept 256 KiB each that long (a review measured 1.4 GiB of them
            # in one worker after 6,000 such sockets).
            self._messages = []
            self._buffer = bytearray()

    async def receive(self) -> dict[str, Any]:
        while not self._messages:
            if self._disconnect is not None:
                return self._disconnect
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        message = self._messages.pop(0)
        if self._blocked:
            self._blocked = False
            self._parse()
        return message

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.send":
            if self._state != _OPEN:
                if self._state == _CONNECTING:
                    raise RuntimeError("websocket.send before websocket.accept")
                raise WebSocketClosed("the WebSocket is closed")
            text = message.get("text")
            if text is not None:
                self._write_message(_TEXT, text.encode("utf-8"))
            else:
                self._write_message(_BINARY, bytes(message.get("bytes") or b""))
            if self._writing_paused:
                waiter = asyncio.get_running_loop().create_future()
                self._drain_waiters.append(waiter)
                await waiter
        elif kind == "websocket.accept":
            if self._state != _CONNECTING:
                raise RuntimeError("websocket.accept sent twice")
            self._accept(message)
        elif kind == "websocket.close":
            if self._state == _CONNECTING:
                self._reject(403)
            elif self._state == _OPEN:
                code = message.get("code") or 1000
                if not _valid_close_code(code):
                    raise ValueError(f"{code} may not be sent in a close frame (RFC 6455 7.4)")
                self._start_close(code, message.get("reason") or "")
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")

    # --- handshake -------------------------------------------------------------------------

    def _request_header(self, name: bytes) -> bytes | None:
        values = [value for key, value in self.scope["headers"] if key == name]
        return b", ".join(values) if values else None

    def _accept(self, message: dict[str, Any]) -> None:
        if self._request_header(b"sec-websocket-version") != b"13":
            self._reject(426, "Sec-WebSocket-Version: 13\r\n")  # RFC 6455 4.2.2: the version we speak
            return
        key = self._request_header(b"sec-websocket-key") or b""
        try:
            valid_key = len(base64.b64decode(key, validate=True)) == 16
        except ValueError:
            valid_key = False
        if not valid_key:
            self._reject(400)
            return
        accept = base64.b64encode(hashlib.sha1(key + _WS_GUID, usedforsecurity=False).digest()).decode("ascii")
        lines = [
            "HTTP/1.1 101 Switching Protocols",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {accept}",
        ]
        if message.get("subprotocol"):
            lines.append(f"Sec-WebSocket-Protocol: {message['subprotocol']}")
        offers = self._request_header(b"sec-websocket-extensions")
        if offers and self.compress_from is not None:
            deflate = _deflate_response(offers.decode("latin-1"))
            if deflate is not None:
                lines.append(f"Sec-WebSocket-Extensions: {deflate[0]}")
                self._deflate_window = min(deflate[1], self.compress_window_bits)
        for name, value in message.get("headers") or ():
            name = name.decode("latin-1") if isinstance(name, bytes) else name
            value = value.decode("latin-1") if isinstance(value, bytes) else value
            lines.append(f"{name}: {value}")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self._state = _OPEN
        # Nothing reads the request's headers once the handshake is answered (the gateway reads
        # frames), and the scope lives as long as the socket: its list of them was ~0.45 KB of every
        # idle socket's 19 by tracemalloc (the byte strings themselves stay, held by falcon's
        # request and gunicorn's). The scope is this server's to build and keep.
        self.scope["headers"] = []
        if self._buffer:  # frames sent before the handshake's answer
            self._parse()

    def _reject(self, status: int, headers: str = "") -> None:
        """The handshake refused (ASGI: a close before accept is a 403): no WebSocket is made."""
        reason = {400: "Bad Request", 403: "Forbidden", 426: "Upgrade Required", 500: "Internal Server Error"}
        self.transport.write(
            f"HTTP/1.1 {status} {reason[status]}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        self._state = _CLOSED
        self._disconnected(1006)
        self.transport.close()

    # --- frames in ---------------------------------------------------------------------------

    def _parse(self) -> None:
        if self._parsing:  # re-entered from a close this loop wrote: the loop goes on by itself
            return
        self._parsing = True
        try:
            self._parse_frames()
        finally:
            self._parsing = False

    def _parse_frames(self) -> None:
        # Frames are read at an offset and the buffer is cut once at the end: cutting each frame off
        # the front moved the whole rest of the buffer per frame (up to max_buffer bytes, 16 times
        # when a flooding client's reader resumes).
        buf = self._buffer
        pos = 0
        try:
            while self._state in (_OPEN, _CLOSING):
                if self._skip:
                    dropped = min(self._skip, max(0, len(buf) - pos))
                    pos += dropped
                    self._skip -= dropped
                have = len(buf) - pos
                if have < 2 or (self._writing_paused and self._state == _OPEN):
                    break  # (while the client does not read, its pings wait: a pong would have to)
                if self._state == _OPEN and len(self._messages) >= self.queue_size:
                    self._blocked = True
                    break
                first, second = buf[pos], buf[pos + 1]
                n = second & 0x7F
                start = 2
                if n == 126:
                    if have < 4:
                        break
                    n, start = (buf[pos + 2] << 8) | buf[pos + 3], 4
                elif n == 127:
                    if have < 10:
                        break
                    n, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
                error = self._check(first, second, n)
                if error == _SKIP or error == 1009:
                    # Discarded unread (never buffered whole); the client's close may follow it.
                    self._skip = start + 4 + n
                    if error == 1009:
                        self._fail(error)
                    continue
                if error:
                    self._fail(error)
                    break
                end = start + 4 + n
                if have < end:
                    break
                mask = bytes(buf[pos + start : pos + start + 4])
                payload = _unmask(bytes(buf[pos + start + 4 : pos + end]), mask)
                pos += end
                self._frame(first, payload)
        finally:
            del buf[:pos]  # (a no-op when a close in _frame already emptied it)
        if not self._reading_paused and len(buf) > self.max_buffer:
            self._reading_paused = True
            self.transport.pause_reading()
        elif self._reading_paused and len(buf) <= self.max_buffer // 2:
            self._reading_paused = False
            self.transport.resume_reading()

    def _check(self, first: int, second: int, n: int) -> int:
        """The close code a frame header calls for (RFC 6455 5.2-5.5), _SKIP, or 0."""
        opcode = first & 0x0F
        if not second & 0x80 or first & 0x30 or n >> 63:
            return PROTOCOL_ERROR  # unmasked, RSV2/RSV3, or a 64-bit length with its top bit set
        if opcode >= _CLOSE:
            if opcode > _PONG or not first & 0x80 or n > 125 or first & 0x40:
                return PROTOCOL_ERROR  # a reserved opcode, a fragmented or oversize control frame
            return 0
        if self._state == _CLOSING:
            return _SKIP  # a data frame after our close: only the client's close matters now
        if opcode > _BINARY:
            return PROTOCOL_ERROR
        if first & 0x40 and (opcode == _CONTINUATION or not self._deflate_window):
            return PROTOCOL_ERROR  # RSV1 only on a message's first frame, with permessage-deflate
        if (opcode == _CONTINUATION) != bool(self._fragment_first):
            return PROTOCOL_ERROR  # a continuation of nothing, or a new message inside one
        if self._fragment_size + n > self.max_message:
            return 1009
        return 0

    def _frame(self, first: int, payload: bytes) -> None:
        opcode = first & 0x0F
        if opcode == _CLOSE:
            self._close_received(payload)
        elif opcode == _PING:
            if self._state == _OPEN:
                self.transport.write(_header(0x80 | _PONG, len(payload)) + payload)
        elif opcode == _PONG or self._state != _OPEN:
            pass  # unsolicited pongs are allowed; data after our close is dropped
        elif first & 0x80 and opcode:
            self._message(first, payload)
        else:
            if opcode:
                self._fragment_first = first
            self._fragments.append(payload)
            self._fragment_size += len(payload)
            if first & 0x80:
                whole = b"".join(self._fragments)
                first, self._fragment_first, self._fragments, self._fragment_size = self._fragment_first, 0, [], 0
                self._message(first, whole)

    def _message(self, first: int, payload: bytes) -> None:
        if first & 0x40:
            inflater = zlib.decompressobj(-15)
            try:
                payload = inflater.decompress(payload + _EMPTY_BLOCK, self.max_message + 1)
            except zlib.error:
                self._fail(INVALID_DATA)
                return
            if len(payload) > self.max_message or inflater.unconsumed_tail:
                self._fail(1009)
                return
        if first & 0x0F == _TEXT:
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError:
                self._fail(INVALID_DATA)
                return
            self._deliver({"type": "websocket.receive", "text": text})
        else:
            self._deliver({"type": "websocket.receive", "bytes": payload})

    def _close_received(self, payload: bytes) -> None:
        code, reason = 1005, ""
        if len(payload) >= 2:
            code = int.from_bytes(payload[:2], "big")
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                self._fail(INVALID_DATA)
                return
            if not _valid_close_code(code):
                self._fail(PROTOCOL_ERROR)
                return
        elif payload:
            self._fail(PROTOCOL_ERROR)
            return
        if self._state == _OPEN:
            # Echo the code; a close without one is answered without one (RFC 6455 5.5.1, 7.4.1:
            # 1005 never goes on the wire).
            self._write_close(payload[:2])
        self._disconnected(code, reason)
        self._state = _CLOSED
        self._finish()
        # The server closes the TCP connection first (RFC 6455 7.1.1): gunicorn does once run()
        # returns, so once the app has heard the disconnect and let the socket go (a client that
        # sees the connection end can count on the server having forgotten it); at the latest
        # close_timeout seconds from now.
        self._close_timer = asyncio.get_running_loop().call_later(self.close_timeout, self.transport.close)

    # --- frames out --------------------------------------------------------------------------

    def _write_message(self, opcode: int, payload: bytes) -> None:
        first = 0x80 | opcode
        if self._deflate_window and self.compress_from is not None and len(payload) >= self.compress_from:
            deflater = zlib.compressobj(
                self.compress_level, zlib.DEFLATED, -self._deflate_window, self.compress_mem_level
            )
            packed = (deflater.compress(payload) + deflater.flush(zlib.Z_SYNC_FLUSH))[:-4]
            if len(packed) < len(payload):
                first, payload = first | 0x40, packed
        self.transport.write(_header(first, len(payload)) + payload)

    def _write_close(self, body: bytes) -> None:
        self.transport.write(_header(0x80 | _CLOSE, len(body)) + body)

    def _start_close(self, code: int, reason: str) -> None:
        """Our close frame; the client's is awaited `close_timeout` seconds, data meanwhile dropped."""
        # A reason fits in 123 bytes, cut on a character boundary.
        text = reason.encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")
        self._write_close(code.to_bytes(2, "big") + text)
        self._state = _CLOSING
        self._fragments, self._fragment_first, self._fragment_size = [], 0, 0
        self._close_timer = asyncio.get_running_loop().call_later(self.close_timeout, self._abort)
        if self._blocked or self._buffer:
            self._blocked = False
            self._parse()

    def _fail(self, code: int) -> None:
        """Fail the WebSocket connection (RFC 6455 7.1.7): close with `code`, the app hears it now."""
        if self._state == _OPEN:
            self._disconnected(code)
            self._start_close(code, "")
        else:
            self._abort()

    def _abort(self) -> None:
        """No close frame came in time (or the closing went wrong): drop the connection, and what
        is still unsent to a client that stopped reading."""
        self._state = _CLOSED
        self._disconnected(1006)
        self.transport.abort()
        self._finish()

    # --- the app's side --------------------------------------------------------------------

    def _deliver(self, message: dict[str, Any]) -> None:
        self._messages.append(message)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _disconnected(self, code: int, reason: str = "") -> None:
        if self._disconnect is None:
            self._disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
            self._deliver(self._disconnect)

    def _finish(self) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)


GUNICORN_TESTED = "26.2.0"  # the gunicorn whose private API the realtime worker was written against


def check_gunicorn_seams() -> None:
    """The private gunicorn API RealtimeWorker and BoundedWebSocketProtocol stand on, checked when a
    worker boots so that an upgrade that moved it fails with this error instead of with clients."""
    handle = getattr(ASGIProtocol, "_handle_websocket", None)
    missing = [
        name
        for name, present in (
            ("gunicorn.asgi.websocket.WebSocketProtocol", hasattr(gunicorn.asgi.websocket, "WebSocketProtocol")),
            # _handle_websocket imports the class by that name at each upgrade and constructs it
            ("ASGIProtocol._handle_websocket", handle is not None and "WebSocketProtocol" in handle.__code__.co_names),
            ("ASGIWorker.handle_exit_signal", hasattr(ASGIWorker, "handle_exit_signal")),
        )
        if not present
    ]
    if missing:
        raise RuntimeError(
            f"gunicorn {gunicorn.__version__} no longer has what runtime/worker_class.py patches "
            f"(written against {GUNICORN_TESTED}): {', '.join(missing)}"
        )


class RealtimeWorker(ASGIWorker):  # type: ignore[misc]
    """gunicorn's native ASGI worker for the gateway: the WebSocket protocol above, and on SIGTERM
    every socket closed with 1001 at once (stock gunicorn would wait out graceful_timeout for
    sockets that never end by themselves), so apps reconnect to another replica.

    Private gunicorn API (written against 26.2.0; pyproject allows >=26.2,<27, so any upgrade, a
    26.x one included, means re-reading gunicorn/asgi/protocol.py and gunicorn/workers/gasgi.py):
    the module name `gunicorn.asgi.websocket.WebSocketProtocol`, which ASGIProtocol._handle_websocket
    imports at each upgrade (the seam: replaced here), and ASGIWorker's `handle_exit_signal`, `asgi`
    (the app) and `loop`. check_gunicorn_seams() verifies at boot that the names are still there."""

    def init_process(self) -> None:
        check_gunicorn_seams()
        gunicorn.asgi.websocket.WebSocketProtocol = BoundedWebSocketProtocol
        super().init_process()

    def handle_exit_signal(self) -> None:
        super().handle_exit_signal()
        gateway = getattr(self.asgi, "gateway", None)
        if gateway is not None:
            self.loop.create_task(gateway.shutdown())
