"""The signed-in customer's profile."""

from typing import Any

import falcon

from lib.customers import profile
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(method="GET", route="/api/client/me", auth=Auth.CUSTOMER)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return profile(ctx.services.db, ctx.principal.user_id)
