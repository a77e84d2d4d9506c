"""A session as its participants see it: parties by call name, status, timer, pending extension."""

from typing import Any

import falcon
from marshmallow import fields

from functions._shapes import Extension, Session
from lib.chat.views import info
from lib.endpoint import Auth, Ctx, Endpoint


class Info(Session):
    pending_extension = fields.Nested(Extension, allow_none=True, metadata={"description": "being decided or paid"})


ENDPOINT = Endpoint(
    method="GET", route="/api/shared/chat/{session_id:uuid}/info", auth=Auth.ANY_APP_USER, response=Info
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return info(ctx.services.db, ctx.principal, str(ctx.params["session_id"]))
