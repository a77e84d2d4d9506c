"""The signed-in customer's profile, with account_belongs_to, has_consulted and linked_identities."""

from typing import Any

import falcon

from functions._shapes import CustomerProfile
from functions.client.me._account import customer_view
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(method="GET", route="/api/client/me", auth=Auth.CUSTOMER, response=CustomerProfile)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return customer_view(ctx.services.db, ctx.principal.user_id, ctx.services.profiles)  # lib/customers.kept_profiles
