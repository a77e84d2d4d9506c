"""End the chat early, at the path older app builds call (same as /api/client/chat/{id}/end)."""

from typing import Any

import falcon

from functions._shapes import Session
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(
    method="POST", route="/api/client/session/{session_id:uuid}/end", auth=Auth.CUSTOMER, response=Session
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return ctx.services.chat.end_early(ctx.principal, str(ctx.params["session_id"]))
