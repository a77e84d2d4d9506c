"""One failed pairing with its payment and its refund (due or done)."""

from typing import Any

import falcon
from marshmallow import fields

from functions._shapes import ReviewedFailure, nullable
from lib.endpoint import Auth, Ctx, Endpoint
from lib.errors import NotFound


class Failure(ReviewedFailure):
    xendit_invoice_id = nullable(fields.String)


ENDPOINT = Endpoint(
    method="GET",
    route="/internal/failed-pairings/{failure_id:uuid}",
    auth=Auth.CC_USER,
    permission="payments.manage",
    response=Failure,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    row = ctx.services.db.fetch_one(
        "SELECT f.*, p.amount, p.currency, p.confirmed_at, p.xendit_invoice_id, r.id AS refund_id, "
        "r.refunded_at, r.reference AS refund_reference FROM pairing_failures f "
        "JOIN payment_requests p ON p.id = f.payment_request_id "
        "LEFT JOIN refunds r ON r.payment_request_id = f.payment_request_id AND r.reason = f.cause "
        "WHERE f.id = %(failure_id)s",
        {"failure_id": ctx.params["failure_id"]},
    )
    if row is None:
        raise NotFound()
    return row
