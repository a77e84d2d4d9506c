"""Helpers for tests: call a handler directly, make tokens, find free ports, wait for a server."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import falcon
import requests
from falcon import testing

from lib.clock import utcnow
from lib.endpoint import Ctx
from lib.principal import Principal
from lib.services import Services


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
    import logging

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
