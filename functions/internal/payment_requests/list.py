"""Payment requests, newest first; filter by status, customer and creation time."""

from typing import Any

import falcon
from marshmallow import fields, validate

from functions._shapes import AdminPaymentRequest
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pagination import NEWEST, PageQuery
from lib.payments.requests import admin_doc

STATUSES = ["pending", "confirmed", "consumed", "expired", "abandoned", "failed_pairing"]


class Query(PageQuery):
    status = fields.String(load_default=None, validate=validate.OneOf(STATUSES))
    customer_id = fields.UUID(load_default=None)
    created_from = fields.AwareDateTime(load_default=None)
    created_to = fields.AwareDateTime(load_default=None)


ENDPOINT = Endpoint(
    method="GET",
    route="/internal/payment-requests",
    auth=Auth.CC_USER,
    permission="payments.read",
    query=Query,
    response=AdminPaymentRequest,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    q = ctx.query
    rows = ctx.services.db.fetch_all(
        "SELECT * FROM payment_requests WHERE (%(s)s::text IS NULL OR status = %(s)s) "
        "AND (%(cu)s::uuid IS NULL OR customer_id = %(cu)s) "
        "AND (%(f)s::timestamptz IS NULL OR created_at >= %(f)s) AND (%(t)s::timestamptz IS NULL OR created_at < %(t)s) "
        "AND (%(k0)s::timestamptz IS NULL OR (created_at, id) < (%(k0)s, %(k1)s)) "
        "ORDER BY created_at DESC, id DESC LIMIT %(n)s",
        {"s": q["status"], "cu": q["customer_id"], "f": q["created_from"], "t": q["created_to"], **NEWEST.params(q)},
    )
    return NEWEST.page(rows, q["limit"], admin_doc)
