"""Every change to a tier: who, what kind, before and after."""

from typing import Any

import falcon

from lib.endpoint import Auth, Ctx, Endpoint
from lib.pricing import tier_history

ENDPOINT = Endpoint(
    method="GET", route="/internal/pricing/tiers/{tier_id:uuid}/history", auth=Auth.CC_USER, permission="pricing.manage"
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    return {"items": tier_history(ctx.services.db, str(ctx.params["tier_id"]))}
