"""Decline a request: a blast stays open for the others."""

import falcon

from lib.chat.pairing import decline
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(
    method="POST", route="/api/mitra/chat-requests/{session_id:uuid}/decline", auth=Auth.MITRA, status=204
)


def handle(req: falcon.Request, ctx: Ctx) -> None:
    assert ctx.principal is not None
    s = ctx.services
    decline(s.db, s.valkey, s.chat_events, ctx.principal.user_id, str(ctx.params["session_id"]))
