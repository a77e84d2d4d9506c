"""Decline a request: a blast stays open for the others."""

import falcon

from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(
    method="POST", route="/api/mitra/chat-requests/{session_id:uuid}/decline", auth=Auth.MITRA, status=204
)


def handle(req: falcon.Request, ctx: Ctx) -> None:
    assert ctx.principal is not None
    ctx.services.chat.decline(ctx.principal.user_id, str(ctx.params["session_id"]))
