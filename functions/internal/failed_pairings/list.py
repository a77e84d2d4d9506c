"""Paid requests that ended without a chat, newest first, each with its refund (due or done: the
money itself is recorded as sent back under /internal/refunds)."""

from typing import Any

import falcon
from marshmallow import fields, validate
from psycopg import sql

from functions._shapes import ReviewedFailure
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pagination import NEWEST, PageQuery

REVIEW = ["open", "reviewed", "refunded"]


class Query(PageQuery):
    review_status = fields.String(load_default=None, validate=validate.OneOf(REVIEW))


ENDPOINT = Endpoint(
    method="GET",
    route="/internal/failed-pairings",
    auth=Auth.CC_USER,
    permission="payments.manage",
    query=Query,
    response=ReviewedFailure,
)

_LIST = sql.SQL(
    "SELECT f.*, p.amount, p.currency, p.confirmed_at, r.id AS refund_id, r.refunded_at, "
    "r.reference AS refund_reference FROM pairing_failures f "
    "JOIN payment_requests p ON p.id = f.payment_request_id "
    "LEFT JOIN refunds r ON r.payment_request_id = f.payment_request_id AND r.reason = f.cause "
    "WHERE (%(review_status)s::text IS NULL OR f.review_status = %(review_status)s) "
    "AND {after} ORDER BY {order} LIMIT %(limit)s"
).format(after=NEWEST.after("f"), order=NEWEST.order("f"))


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    q = ctx.query
    rows = ctx.services.db.fetch_all(_LIST, {"review_status": q["review_status"], **NEWEST.params(q)})
    return NEWEST.page(rows, q["limit"])
