"""Every change to a tier, newest first: who, what kind, before and after."""

from typing import Any

import falcon
from marshmallow import Schema, fields

from functions._shapes import Id, Time, nullable
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pagination import PageQuery
from lib.pricing import HISTORY_ORDER, tier_history


class Change(Schema):
    id = fields.Integer()
    kind = fields.String()
    before = fields.Dict(allow_none=True, metadata={"description": "the tier's fields before (null on create)"})
    after = fields.Dict(allow_none=True, metadata={"description": "the fields written"})
    changed_by = nullable(Id)
    changed_by_email = nullable(fields.String)
    changed_at = Time()


ENDPOINT = Endpoint(
    method="GET",
    route="/internal/pricing/tiers/{tier_id:uuid}/history",
    auth=Auth.CC_USER,
    permission="pricing.manage",
    query=PageQuery,
    response=Change,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    rows = tier_history(ctx.services.db, str(ctx.params["tier_id"]), HISTORY_ORDER.params(ctx.query))
    return HISTORY_ORDER.page(rows, ctx.query["limit"])
