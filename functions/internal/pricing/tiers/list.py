"""All pricing tiers, inactive (soft-deleted) ones included, in display order."""

from typing import Any

import falcon

from functions._shapes import Tier
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pagination import PageQuery
from lib.pricing import TIER_ORDER, tier_page

ENDPOINT = Endpoint(
    method="GET",
    route="/internal/pricing/tiers",
    auth=Auth.CC_USER,
    permission="pricing.manage",
    query=PageQuery,
    response=Tier,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    rows = tier_page(ctx.services.db, TIER_ORDER.params(ctx.query))
    return TIER_ORDER.page(rows, ctx.query["limit"])
