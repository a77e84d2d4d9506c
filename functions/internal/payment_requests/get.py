"""One payment request with its webhook history, the invoices paid for it, its refunds and the
closing of its invoice at Xendit."""

from typing import Any

import falcon
from marshmallow import Schema, fields

from functions._shapes import AdminPaymentRequest, Refund, Time, nullable
from lib.endpoint import Auth, Ctx, Endpoint
from lib.errors import NotFound
from lib.payments.refunds import refund_doc
from lib.payments.requests import admin_doc


class Webhook(Schema):
    id = fields.Integer()
    received_at = Time()
    status = nullable(fields.String)
    outcome = nullable(fields.String)


class PaidInvoice(Schema):
    invoice_id = fields.String()
    amount = fields.Integer()
    currency = fields.String()
    source = fields.String()
    outcome = fields.String()
    created_at = Time()


class InvoiceClosure(Schema):
    reason = fields.String()
    attempts = fields.Integer()
    next_attempt_at = nullable(Time)
    last_error = nullable(fields.String)
    created_at = Time()
    closed_at = nullable(Time)
    outcome = nullable(fields.String)


class PaymentRecord(AdminPaymentRequest):
    webhooks = fields.List(fields.Nested(Webhook))
    paid_invoices = fields.List(fields.Nested(PaidInvoice))
    refunds = fields.List(fields.Nested(Refund))
    invoice_closure = fields.Nested(InvoiceClosure, allow_none=True)


ENDPOINT = Endpoint(
    method="GET",
    route="/internal/payment-requests/{request_id:uuid}",
    auth=Auth.CC_USER,
    permission="payments.read",
    response=PaymentRecord,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    db = ctx.services.db
    row = db.fetch_one(
        "SELECT * FROM payment_requests WHERE id = %(payment_request_id)s",
        {"payment_request_id": ctx.params["request_id"]},
    )
    if row is None:
        raise NotFound()
    logs = db.fetch_all(
        "SELECT id, received_at, status, outcome FROM webhook_logs WHERE external_id = %(external_id)s ORDER BY received_at, id",
        {"external_id": str(row["id"])},
    )
    paid = db.fetch_all(
        "SELECT invoice_id, amount, currency, source, outcome, created_at FROM paid_invoices "
        "WHERE payment_request_id = %(payment_request_id)s ORDER BY created_at",
        {"payment_request_id": row["id"]},
    )
    refunds = db.fetch_all(
        "SELECT r.*, p.kind FROM refunds r JOIN payment_requests p ON p.id = r.payment_request_id "
        "WHERE r.payment_request_id = %(payment_request_id)s ORDER BY r.created_at",
        {"payment_request_id": row["id"]},
    )
    closure = db.fetch_one(
        "SELECT reason, attempts, next_attempt_at, last_error, created_at, closed_at, outcome FROM invoice_closures "
        "WHERE payment_request_id = %(payment_request_id)s",
        {"payment_request_id": row["id"]},
    )
    return {
        **admin_doc(row),
        "webhooks": logs,
        "paid_invoices": paid,
        "refunds": [refund_doc(r) for r in refunds],
        "invoice_closure": closure,
    }
