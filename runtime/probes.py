"""Liveness and readiness probes, mounted on every listener."""

from __future__ import annotations

from typing import Any

import falcon

from lib.endpoint import Auth, Ctx, Endpoint
from lib.errors import ApiError, ServiceUnavailable
from lib.valkey import is_up

HEALTH = Endpoint(method="GET", route="/health", auth=Auth.NONE, summary="Liveness: touches nothing")
READY = Endpoint(
    method="GET",
    route="/ready",
    auth=Auth.NONE,
    summary="Readiness: PostgreSQL (required) and Valkey (optional) state",
)

_OK = {"status": "ok"}


def health(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    return _OK


def ready(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    try:
        with ctx.services.db.connection(timeout=1.0) as conn:
            conn.execute("SELECT 1")
        database = "up"
    except ApiError:
        database = "down"
    valkey = "up" if is_up(ctx.services.valkey) else "down"
    if database == "down":
        raise ServiceUnavailable(
            "Database unavailable", retry_after=5, details={"database": database, "valkey": valkey}
        )
    return {"status": "ready", "database": database, "valkey": valkey}
