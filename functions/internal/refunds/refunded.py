"""Record that a refund due was sent back, with the transfer's reference (admins). Idempotent: the
same reference again answers the same refund; another reference is 409 REFUND_ALREADY_RECORDED."""

from typing import Any

import falcon
from marshmallow import Schema, validate

from functions._shapes import Refund
from lib.endpoint import Auth, Ctx, Endpoint
from lib.fields import Text


class Body(Schema):
    reference = Text(required=True, validate=validate.Length(1, 200))


ENDPOINT = Endpoint(
    method="POST",
    route="/internal/refunds/{refund_id:uuid}/refunded",
    auth=Auth.CC_USER,
    permission="payments.refund",
    body=Body,
    response=Refund,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return ctx.services.payments.mark_refunded(
        str(ctx.params["refund_id"]), ctx.body["reference"], ctx.principal.user_id
    )
