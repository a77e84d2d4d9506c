"""Change the first-session discount, guarded by the updated_at the editor read; history kept."""

from typing import Any

import falcon
from marshmallow import Schema, fields, validate

from functions._shapes import Discount
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pricing import update_discount


class Body(Schema):
    updated_at = fields.AwareDateTime(required=True)
    enabled = fields.Boolean()
    discount_type = fields.String(validate=validate.OneOf(["amount", "percent"]))
    value = fields.Integer(strict=True, validate=validate.Range(0, 100_000_000))


ENDPOINT = Endpoint(
    method="PATCH",
    route="/internal/pricing/first-session-discount",
    auth=Auth.CC_USER,
    permission="pricing.manage",
    body=Body,
    response=Discount,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return update_discount(ctx.services.db, ctx.body, ctx.principal.user_id)
