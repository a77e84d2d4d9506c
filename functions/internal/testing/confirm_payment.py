"""Development only: pay a request by pushing a PAID callback through the real webhook path; only
with the simulated gateway (XENDIT_ENABLED=false), never for a request with a real Xendit invoice."""

import json
from typing import Any

import falcon

from functions._shapes import WebhookReply
from lib.endpoint import Auth, Ctx, Endpoint
from lib.errors import Forbidden, NotFound

ENDPOINT = Endpoint(
    method="POST",
    route="/internal/_test/payments/{request_id:uuid}/confirm",
    auth=Auth.NONE,
    dev_only=True,
    response=WebhookReply,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    s = ctx.services
    if s.settings.xendit_enabled:  # real invoices are paid by real money, through Xendit's own callback
        raise Forbidden(
            "The confirm hook pays simulated requests only; XENDIT_ENABLED is true", code="SIMULATED_GATEWAY_ONLY"
        )
    row = s.db.fetch_one(
        "SELECT * FROM payment_requests WHERE id = %(payment_request_id)s",
        {"payment_request_id": ctx.params["request_id"]},
    )
    if row is None:
        raise NotFound()
    callback = {
        "id": row["xendit_invoice_id"] or "sim",
        "external_id": str(row["id"]),
        "status": "PAID",
        "amount": row["amount"],
        "paid_amount": row["amount"],
        "currency": row["currency"],
        "payment_method": "SIMULATED",
        "payment_channel": "SIMULATED",
        "metadata": {"app": "halobestie_v2"},
    }
    raw = json.dumps(callback).encode()
    _, reply = s.payments.callback(raw, s.settings.xendit_webhook_token, "internal-test-hook", limited=False)
    return reply
