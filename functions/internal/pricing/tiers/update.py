"""Edit a tier's label, price, order or active flag, guarded by the updated_at the editor read."""

from typing import Any

import falcon
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from functions._shapes import Tier
from lib.endpoint import Auth, Ctx, Endpoint
from lib.fields import Text
from lib.pricing import update_tier


class Body(Schema):
    updated_at = fields.AwareDateTime(required=True)
    label = Text(validate=validate.Length(1, 60))
    price = fields.Integer(strict=True, validate=validate.Range(1, 100_000_000))
    sort_order = fields.Integer(strict=True, validate=validate.Range(-10000, 10000))
    is_active = fields.Boolean()
    # Accepted only to be refused with a clear reason: a tier's mode and length never change
    # (payments and history refer to them); create a new tier instead.
    mode = fields.Raw()
    minutes = fields.Raw()

    @validates_schema
    def _immutable(self, data: dict[str, Any], **_: Any) -> None:
        errors = {f: ["Cannot be changed; create a new tier instead."] for f in ("mode", "minutes") if f in data}
        if errors:
            raise ValidationError(errors)


ENDPOINT = Endpoint(
    method="PATCH",
    route="/internal/pricing/tiers/{tier_id:uuid}",
    auth=Auth.CC_USER,
    permission="pricing.manage",
    body=Body,
    response=Tier,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return update_tier(ctx.services.db, str(ctx.params["tier_id"]), ctx.body, ctx.principal.user_id)
