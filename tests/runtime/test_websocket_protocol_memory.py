"""A closed socket keeps nothing its client sent: gunicorn's protocol and ours point at each other, so
the protocol object outlives its socket until a full collection, and what it still holds with it."""

from __future__ import annotations

import asyncio
import os
import struct
from typing import Any

from runtime.worker_class import BoundedWebSocketProtocol

FRAME_TEXT = 16 * 1024 - 8  # just under the gateway's frame limit


class _Parent:
    """Stands for gunicorn's ASGIProtocol, which keeps `_websocket` for the connection's life."""

    def __init__(self) -> None:
        self._websocket: Any = None

    def connection_lost(self, exc: Exception | None) -> None:
        pass


class _Transport:
    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol

    def get_protocol(self) -> Any:
        return self._protocol

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol

    def write(self, data: bytes) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            asyncio.get_running_loop().call_soon(protocol.connection_lost, None)

    abort = close


class _QuickClose(BoundedWebSocketProtocol):
    close_timeout = 0.05  # the client never answers our close frame


def _client_frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x81, 0x80 | 126)) + struct.pack("!H", len(payload)) + mask + masked


async def _closed_with_frames_queued(frames: int) -> BoundedWebSocketProtocol:
    async def app(scope: Any, receive: Any, send: Any) -> None:  # as the gateway does with junk: read one, close
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        await send({"type": "websocket.close", "code": 4401})

    parent = _Parent()
    scope = {"headers": [(b"sec-websocket-version", b"13"), (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ==")]}
    ws = _QuickClose(_Transport(parent), scope, app, None)  # type: ignore[arg-type]
    parent._websocket = ws
    run = asyncio.ensure_future(ws.run())
    await asyncio.sleep(0)
    payload = b'"' + b"x" * (FRAME_TEXT - 2) + b'"'
    for _ in range(frames):
        ws.data_received(_client_frame(payload))
    await run
    return ws


def test_frames_the_app_never_read_are_dropped_when_the_socket_ends() -> None:
    ws = asyncio.run(_closed_with_frames_queued(20))
    held = sum(len(m.get("text") or "") for m in ws._messages) + len(ws._buffer)
    assert held == 0, f"{held} bytes of client frames outlive the socket"
