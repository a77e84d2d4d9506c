"""Helpers for tests: call a handler through the pipeline (runtime.invoke), make tokens, find free
ports, wait for a server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from falcon import testing

from lib.config.env import Settings
from lib.services import Services
from runtime.invoke import invoke
from tests.conftest import PROJECT_ROOT, TEST_SECRET


def call_handler(services: Services, target: str, *, status: int = 200, **request: Any) -> Any:
    """invoke() for a test that wants the answer's data: the whole pipeline (auth, schemas, the
    handler, rendering, errors) runs as over HTTP; the status must be `status`. Returns the
    envelope's `data` (the body itself when it has no envelope, None for a 204)."""
    result = invoke(services, target, **request)
    assert result.status == status, (result.status, result.body)
    if isinstance(result.body, dict) and result.body.get("success") is True and "data" in result.body:
        return result.body["data"]
    return result.body


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0) -> requests.Response:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return requests.get(url, timeout=1)
        except requests.RequestException as exc:
            last = exc
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


MITRA_STATUS = "/api/mitra/status"


def go_online(public: testing.TestClient, token: str) -> dict[str, Any]:
    result = public.simulate_post(f"{MITRA_STATUS}/online", headers={"Authorization": f"Bearer {token}"})
    assert result.status_code == 200, result.text
    data: dict[str, Any] = result.json["data"]
    return data


def online_logs(services: Services, mitra_id: Any) -> list[tuple[bool, str]]:
    rows = services.db.fetch_all(
        "SELECT is_online, reason FROM mitra_online_logs WHERE mitra_id = %(m)s ORDER BY id", {"m": mitra_id}
    )
    return [(r["is_online"], r["reason"]) for r in rows]


def add_sessions(services: Services, mitra_id: Any, n: int, status: str = "active") -> None:
    """`n` sessions of this mitra in `status`, each with a customer of its own."""
    for _ in range(n):
        services.db.execute(
            "WITH c AS (INSERT INTO customers DEFAULT VALUES RETURNING id) "
            "INSERT INTO chat_sessions (customer_id, mitra_id, status) SELECT c.id, %(m)s, %(s)s FROM c",
            {"m": mitra_id, "s": status},
        )


def process_env(settings: Settings | None = None, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AUTH_JWT_SECRET": TEST_SECRET,
        "LOG_FORMAT": "json",
        "WEB_CONCURRENCY": "1",
        "APP_ENV": "test",
    }
    if settings is not None:
        env |= {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    return env | extra


@contextmanager
def runtime_process(args: list[str], env: dict[str, str], health: str | None) -> Iterator[subprocess.Popen[str]]:
    """`python -m runtime <args>` until the block ends (SIGTERM), after `health` answered if given."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        if health:
            wait_http(health, timeout=30)
        yield proc
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """SIGTERM, wait, then SIGKILL if it would not stop; returns what it printed."""
    if proc.poll() is not None:  # stopped by the test itself, which read its output
        return ""
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""
