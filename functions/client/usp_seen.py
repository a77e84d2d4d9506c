"""Record that the customer has seen the onboarding (unique selling points) screens; idempotent."""

from typing import Any

import falcon

from functions._shapes import CustomerProfile
from functions.client.me._account import customer_view
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(method="POST", route="/api/client/usp-seen", auth=Auth.CUSTOMER, response=CustomerProfile)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    ctx.services.db.execute(
        "UPDATE customers SET usp_seen_at = COALESCE(usp_seen_at, now()) WHERE id = %(customer_id)s",
        {"customer_id": ctx.principal.user_id},
    )
    ctx.services.profiles.forget(ctx.principal.user_id)  # this process answers with the change at once
    return customer_view(ctx.services.db, ctx.principal.user_id)
