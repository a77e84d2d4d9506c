"""One session's record: who was asked, extensions, reroutes and topic flips, who read the transcript (never the transcript)."""

from typing import Any

import falcon

from lib.chat.control import session_record
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(
    method="GET", route="/internal/sessions/{session_id:uuid}", auth=Auth.CC_USER, permission="sessions.read"
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    return session_record(ctx.services.db, str(ctx.params["session_id"]))
