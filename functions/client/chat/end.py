"""End the chat early: the session moves to closing (goodbyes, then completed)."""

from typing import Any

import falcon

from functions._shapes import Session
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(method="POST", route="/api/client/chat/{session_id:uuid}/end", auth=Auth.CUSTOMER, response=Session)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return ctx.services.chat.end_early(ctx.principal, str(ctx.params["session_id"]))
