"""Payment requests, newest first; filter by status, customer and creation time."""

from typing import Any

import falcon
from marshmallow import fields, validate
from psycopg import sql

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

_LIST = sql.SQL(
    "SELECT * FROM payment_requests WHERE (%(status)s::text IS NULL OR status = %(status)s) "
    "AND (%(customer_id)s::uuid IS NULL OR customer_id = %(customer_id)s) "
    "AND (%(created_from)s::timestamptz IS NULL OR created_at >= %(created_from)s) "
    "AND (%(created_to)s::timestamptz IS NULL OR created_at < %(created_to)s) "
    "AND {after} ORDER BY {order} LIMIT %(limit)s"
).format(after=NEWEST.after(), order=NEWEST.order())


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    q = ctx.query
    filters = {k: q[k] for k in ("status", "customer_id", "created_from", "created_to")}
    rows = ctx.services.db.fetch_all(_LIST, {**filters, **NEWEST.params(q)})
    return NEWEST.page(rows, q["limit"], admin_doc)
