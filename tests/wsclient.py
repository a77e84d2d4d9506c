"""A real WebSocket app for the tests: the gateway as a process, and a client that keeps every
frame it received (tests/runtime/test_gateway.py, test_replicas.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from lib.config.env import Settings
from tests.conftest import PROJECT_ROOT
from tests.helpers import free_port, process_env, stop_process, wait_http


@contextmanager
def gateway(settings: Settings, **env: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`python -m runtime serve realtime` on a free port; yields (ws url, process)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "serve", "realtime", "--bind", f"127.0.0.1:{port}"],
        cwd=PROJECT_ROOT,
        env=process_env(settings, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        yield f"ws://127.0.0.1:{port}/api/shared/ws", proc
    finally:
        stop_process(proc, timeout=20)


class Client:
    """A WebSocket app: frames in order, with helpers to wait for one type."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    def send(self, frame: dict[str, Any]) -> None:
        self.ws.send(json.dumps(frame))

    def next(self, timeout: float = 5.0) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(self.ws.recv(timeout=timeout))
        self.seen.append(frame)
        return frame

    def until(self, event_type: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            frame = self.next(max(0.05, deadline - time.monotonic()))
            if frame["type"] == event_type:
                return frame

    def closed_with(self, timeout: float = 5.0) -> int | None:
        """The close code the server sent (None: no close within `timeout`); every frame before it
        is kept in `seen`, so a test can say what the socket was told first."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.next(max(0.05, deadline - time.monotonic()))
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        except TimeoutError:
            return None
        return None


@contextmanager
def socket(url: str, token: str | None, session_id: str | None = None, first: Any = None) -> Iterator[Client]:
    with connect(url, open_timeout=5, close_timeout=2) as ws:
        client = Client(ws)
        if first is not None:
            ws.send(first if isinstance(first, str) else json.dumps(first))
        elif token is not None:
            client.send({"type": "auth", "token": token, **({"session_id": session_id} if session_id else {})})
        yield client
