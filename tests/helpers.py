"""Helpers for tests: call a handler directly, make tokens, find free ports, wait for a server."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any

import falcon
import requests
from falcon import testing

from lib.clock import utcnow
from lib.config.env import Settings
from lib.endpoint import Ctx
from lib.principal import Principal
from lib.services import Services
from tests.conftest import TEST_SECRET


def call_handler(
    handle: Callable[[falcon.Request, Ctx], Any],
    services: Services,
    *,
    body: Any = None,
    query: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    principal: Principal | None = None,
    path: str = "/",
) -> Any:
    """Run handle(req, ctx) without the router: the unit-test door into an endpoint."""
    req = testing.create_req(path=path)
    ctx = Ctx(
        request_id=str(uuid.uuid4()),
        services=services,
        log=falcon_logger(),
        now=utcnow,
        principal=principal,
        body=body,
        query=query or {},
        params=params or {},
        client_ip="127.0.0.1",
    )
    return handle(req, ctx)


def falcon_logger() -> Any:
    return logging.getLogger("test.handler")


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
