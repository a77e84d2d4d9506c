"""Liveness and readiness probes, mounted on every listener; the metrics, on the internal one."""

from __future__ import annotations

from typing import Any

import falcon
from marshmallow import Schema, fields

from lib import metrics as prom
from lib.endpoint import Auth, Ctx, Endpoint, Reply
from lib.errors import ApiError, ServiceUnavailable
from lib.valkey import is_up


class Health(Schema):
    status = fields.String()  # "ok"


class Readiness(Schema):
    status = fields.String()  # "ready"
    database = fields.String()  # "up" | "down"
    valkey = fields.String()


HEALTH = Endpoint(method="GET", route="/health", auth=Auth.NONE, summary="Liveness: touches nothing", response=Health)
READY = Endpoint(
    method="GET",
    route="/ready",
    auth=Auth.NONE,
    summary="Readiness: PostgreSQL (required) and Valkey (optional) state",
    response=Readiness,
)
# The internal listener is private (NetworkPolicy, loopback by default), as Prometheus expects.
METRICS = Endpoint(
    method="GET",
    route="/internal/metrics",
    auth=Auth.NONE,
    summary="Prometheus metrics of this listener's processes (text format; docs/observability.md)",
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


def metrics(req: falcon.Request, ctx: Ctx) -> Reply:
    return Reply(200, prom.exposition(), media_type=prom.CONTENT_TYPE)
