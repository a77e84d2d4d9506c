"""One pricing tier."""

from typing import Any

import falcon

from functions._shapes import Tier
from lib.endpoint import Auth, Ctx, Endpoint
from lib.errors import NotFound
from lib.pricing import tier_doc

ENDPOINT = Endpoint(
    method="GET",
    route="/internal/pricing/tiers/{tier_id:uuid}",
    auth=Auth.CC_USER,
    permission="pricing.manage",
    response=Tier,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    row = ctx.services.db.fetch_one(
        "SELECT * FROM pricing_tiers WHERE id = %(tier_id)s", {"tier_id": ctx.params["tier_id"]}
    )
    if row is None:
        raise NotFound()
    return tier_doc(row)
