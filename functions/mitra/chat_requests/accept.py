"""Take a request: the first accept wins; the winner's repeat answers the same session."""

from typing import Any

import falcon

from functions._shapes import Session
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(
    method="POST", route="/api/mitra/chat-requests/{session_id:uuid}/accept", auth=Auth.MITRA, response=Session
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return ctx.services.chat.accept(ctx.principal.user_id, str(ctx.params["session_id"]))
