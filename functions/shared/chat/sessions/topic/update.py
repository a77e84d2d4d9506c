"""Flag a session's topic sensitive (or back): the confirm step, the latch, an audit row per flip."""

from typing import Any

import falcon
from marshmallow import Schema, fields, validate

from functions._shapes import Session
from lib.endpoint import Auth, Ctx, Endpoint


class Body(Schema):
    topic_sensitivity = fields.String(required=True, validate=validate.OneOf(["normal", "sensitive"]))
    confirmed = fields.Boolean(load_default=False)


ENDPOINT = Endpoint(
    method="PATCH",
    route="/api/shared/chat/sessions/{session_id:uuid}/topic",
    auth=Auth.MITRA,
    body=Body,
    response=Session,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    b = ctx.body
    session_id = str(ctx.params["session_id"])
    return ctx.services.chat.set_topic(ctx.principal, session_id, b["topic_sensitivity"], confirmed=b["confirmed"])
