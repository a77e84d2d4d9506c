"""The first-session discount settings."""

from typing import Any

import falcon

from functions._shapes import Discount
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pricing import first_session_discount

ENDPOINT = Endpoint(
    method="GET",
    route="/internal/pricing/first-session-discount",
    auth=Auth.CC_USER,
    permission="pricing.manage",
    response=Discount,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    return first_session_discount(ctx.services.db)
