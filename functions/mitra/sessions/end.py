"""End the chat early as its Bestie, when early_end_mitra_enabled allows it."""

from typing import Any

import falcon

from functions._shapes import Session
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(method="POST", route="/api/mitra/sessions/{session_id:uuid}/end", auth=Auth.MITRA, response=Session)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return ctx.services.chat.end_early(ctx.principal, str(ctx.params["session_id"]))
