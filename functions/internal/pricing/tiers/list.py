"""All pricing tiers, inactive (soft-deleted) ones included."""

from typing import Any

import falcon

from lib.endpoint import Auth, Ctx, Endpoint
from lib.pricing import list_tiers

ENDPOINT = Endpoint(method="GET", route="/internal/pricing/tiers", auth=Auth.CC_USER, permission="pricing.manage")


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    return {"items": list_tiers(ctx.services.db, active_only=False)}
