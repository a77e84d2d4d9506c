"""Move a live session to another Bestie who is online and under capacity; everyone is told."""

from typing import Any

import falcon
from marshmallow import Schema, fields

from functions._shapes import AdminSession
from lib.chat.control import admin_session_doc
from lib.chat.sessions import BY_ID
from lib.endpoint import Auth, Ctx, Endpoint


class Body(Schema):
    mitra_id = fields.UUID(required=True)


ENDPOINT = Endpoint(
    method="POST",
    route="/internal/sessions/{session_id:uuid}/reroute",
    auth=Auth.CC_USER,
    permission="sessions.manage",
    body=Body,
    response=AdminSession,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    s = ctx.services
    session_id = str(ctx.params["session_id"])
    s.chat.reroute(session_id, str(ctx.body["mitra_id"]), ctx.principal.user_id)
    row = s.db.fetch_one(BY_ID, {"session_id": session_id})
    assert row is not None
    return admin_session_doc(row)
