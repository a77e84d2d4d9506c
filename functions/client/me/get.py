"""The signed-in customer's profile."""

from typing import Any

import falcon

from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(method="GET", route="/api/client/me", auth=Auth.CUSTOMER)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return ctx.services.profiles.get(ctx.principal.user_id)  # lib/customers.kept_profiles
