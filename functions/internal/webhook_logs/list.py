"""Webhook callbacks as received, newest first; filter by external id, status or outcome."""

from typing import Any

import falcon
from marshmallow import fields, validate
from psycopg import sql

from functions._shapes import WebhookLog
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pagination import Keyset, PageQuery

ORDER = Keyset(("received_at", "time"), ("id", "int"))


class Query(PageQuery):
    external_id = fields.String(load_default=None, validate=validate.Length(1, 200))
    status = fields.String(load_default=None, validate=validate.Length(1, 40))
    outcome = fields.String(load_default=None, validate=validate.Length(1, 60))


ENDPOINT = Endpoint(
    method="GET",
    route="/internal/webhook-logs",
    auth=Auth.CC_USER,
    permission="payments.read",
    query=Query,
    response=WebhookLog,
)

_LIST = sql.SQL(
    "SELECT id, provider, received_at, external_id, invoice_id, status, amount, paid_amount, currency, outcome, "
    "payment_request_id, processed_at FROM webhook_logs "
    "WHERE (%(external_id)s::text IS NULL OR external_id = %(external_id)s) "
    "AND (%(status)s::text IS NULL OR status = %(status)s) "
    "AND (%(outcome)s::text IS NULL OR outcome = %(outcome)s) "
    "AND {after} ORDER BY {order} LIMIT %(limit)s"
).format(after=ORDER.after(), order=ORDER.order())


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    q = ctx.query
    rows = ctx.services.db.fetch_all(
        _LIST, {"external_id": q["external_id"], "status": q["status"], "outcome": q["outcome"], **ORDER.params(q)}
    )
    return ORDER.page(rows, q["limit"])
