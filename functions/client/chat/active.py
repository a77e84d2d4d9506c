"""The customer's chat right now: the open search (or a failed targeted one), and the live session."""

from typing import Any

import falcon

from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(method="GET", route="/api/client/chat/active", auth=Auth.CUSTOMER)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return ctx.services.active_views.get(ctx.principal.user_id)  # lib/chat/views.kept_active
