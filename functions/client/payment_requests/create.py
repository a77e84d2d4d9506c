"""Start paying for a chat: the price is computed here, a Xendit invoice is created, the app opens it.
At most PAYMENT_REQUESTS_PER_HOUR new requests per customer (429 RATE_LIMITED before any invoice)."""

import re

import falcon
from marshmallow import Schema, fields, validate

from functions._shapes import PaymentRequest
from lib.endpoint import Auth, Ctx, Endpoint, Reply
from lib.errors import ValidationFailed
from lib.pricing import MODES

_KEY = re.compile(r"[A-Za-z0-9._:-]{8,128}")


class Body(Schema):
    mode = fields.String(required=True, validate=validate.OneOf(MODES))
    tier_id = fields.UUID(required=True)
    topic_sensitivity = fields.String(
        load_default=None, allow_none=True, validate=validate.OneOf(["normal", "sensitive"])
    )
    targeted_mitra_id = fields.UUID(load_default=None, allow_none=True)


ENDPOINT = Endpoint(
    method="POST",
    route="/api/client/payment-requests",
    auth=Auth.CUSTOMER,
    body=Body,
    status=201,
    response=PaymentRequest,
)


def handle(req: falcon.Request, ctx: Ctx) -> Reply:
    assert ctx.principal is not None
    key = req.get_header("Idempotency-Key")
    if key is not None and not _KEY.fullmatch(key):
        raise ValidationFailed({"Idempotency-Key": ["8-128 characters: letters, digits, . _ : -"]})
    return Reply(201, ctx.services.payments.create_request(ctx.principal.user_id, dict(ctx.body), key))
