"""Every change to a tier, newest first: who, what kind, before and after."""

from typing import Any

import falcon

from lib.endpoint import Auth, Ctx, Endpoint
from lib.pagination import PageQuery
from lib.pricing import HISTORY_ORDER, tier_history

ENDPOINT = Endpoint(
    method="GET",
    route="/internal/pricing/tiers/{tier_id:uuid}/history",
    auth=Auth.CC_USER,
    permission="pricing.manage",
    query=PageQuery,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    rows = tier_history(ctx.services.db, str(ctx.params["tier_id"]), HISTORY_ORDER.params(ctx.query))
    return HISTORY_ORDER.page(rows, ctx.query["limit"])
