"""Paid requests that ended without a chat, newest first, each with its refund (due or done: the
money itself is recorded as sent back under /internal/refunds)."""

from typing import Any

import falcon
from marshmallow import fields, validate

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


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    q = ctx.query
    rows = ctx.services.db.fetch_all(
        "SELECT f.*, p.amount, p.currency, p.confirmed_at, r.id AS refund_id, r.refunded_at, "
        "r.reference AS refund_reference FROM pairing_failures f "
        "JOIN payment_requests p ON p.id = f.payment_request_id "
        "LEFT JOIN refunds r ON r.payment_request_id = f.payment_request_id AND r.reason = f.cause "
        "WHERE (%(r)s::text IS NULL OR f.review_status = %(r)s) "
        "AND (%(k0)s::timestamptz IS NULL OR (f.created_at, f.id) < (%(k0)s, %(k1)s)) "
        "ORDER BY f.created_at DESC, f.id DESC LIMIT %(n)s",
        {"r": q["review_status"], **NEWEST.params(q)},
    )
    return NEWEST.page(rows, q["limit"])
