"""Add a pricing tier (mode and minutes are fixed for its lifetime)."""

import falcon
from marshmallow import Schema, fields, validate

from functions._shapes import Tier
from lib.endpoint import Auth, Ctx, Endpoint, Reply
from lib.fields import Text
from lib.pricing import MODES, create_tier


class Body(Schema):
    mode = fields.String(required=True, validate=validate.OneOf(MODES))
    minutes = fields.Integer(required=True, strict=True, validate=validate.Range(1, 10080))
    price = fields.Integer(required=True, strict=True, validate=validate.Range(1, 100_000_000))
    label = Text(required=True, validate=validate.Length(1, 60))
    sort_order = fields.Integer(strict=True, load_default=0, validate=validate.Range(-10000, 10000))


ENDPOINT = Endpoint(
    method="POST",
    route="/internal/pricing/tiers",
    auth=Auth.CC_USER,
    permission="pricing.manage",
    body=Body,
    status=201,
    response=Tier,
)


def handle(req: falcon.Request, ctx: Ctx) -> Reply:
    assert ctx.principal is not None
    return Reply(201, create_tier(ctx.services.db, ctx.body, ctx.principal.user_id))
