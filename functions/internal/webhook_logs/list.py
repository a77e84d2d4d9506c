"""Webhook callbacks as received, newest first; filter by external id, status or outcome."""

from typing import Any

import falcon
from marshmallow import fields, validate

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


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    q = ctx.query
    rows = ctx.services.db.fetch_all(
        "SELECT id, provider, received_at, external_id, invoice_id, status, amount, paid_amount, currency, outcome, "
        "payment_request_id, processed_at FROM webhook_logs "
        "WHERE (%(e)s::text IS NULL OR external_id = %(e)s) AND (%(s)s::text IS NULL OR status = %(s)s) "
        "AND (%(o)s::text IS NULL OR outcome = %(o)s) "
        "AND (%(k0)s::timestamptz IS NULL OR (received_at, id) < (%(k0)s, %(k1)s)) "
        "ORDER BY received_at DESC, id DESC LIMIT %(n)s",
        {"e": q["external_id"], "s": q["status"], "o": q["outcome"], **ORDER.params(q)},
    )
    return ORDER.page(rows, q["limit"])
