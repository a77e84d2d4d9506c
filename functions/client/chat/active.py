"""The customer's chat right now: the open search (or a failed targeted one), and the live session."""

from typing import Any

import falcon
from marshmallow import Schema, fields

from functions._shapes import Pairing, Session
from lib.endpoint import Auth, Ctx, Endpoint


class Active(Schema):
    pairing = fields.Nested(Pairing, allow_none=True)
    session = fields.Nested(Session, allow_none=True, metadata={"description": "with unread_count"})


ENDPOINT = Endpoint(method="GET", route="/api/client/chat/active", auth=Auth.CUSTOMER, response=Active)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return ctx.services.active_views.get(ctx.principal.user_id)  # lib/chat/views.kept_active
