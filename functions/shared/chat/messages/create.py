"""Send a message (the REST twin of the WebSocket send); idempotent on client_message_id."""

import falcon
from marshmallow import Schema, fields, validate

from functions._shapes import Message
from lib.chat.messages import MAX_LENGTH, Quota, send
from lib.endpoint import Auth, Ctx, Endpoint, Reply


class Body(Schema):
    client_message_id = fields.String(required=True, validate=validate.Length(1, 100))
    content = fields.String(required=True, validate=validate.Length(1, MAX_LENGTH))


ENDPOINT = Endpoint(
    method="POST",
    route="/api/shared/chat/{session_id:uuid}/messages",
    auth=Auth.ANY_APP_USER,
    body=Body,
    status=201,
    response=Message,
)


def handle(req: falcon.Request, ctx: Ctx) -> Reply:
    assert ctx.principal is not None
    s = ctx.services
    b = ctx.body
    doc, _ = send(
        s.db,
        s.chat_events,
        s.transcripts,
        ctx.principal,
        str(ctx.params["session_id"]),
        b["client_message_id"],
        b["content"],
        quota=Quota(s.valkey, s.settings.messages_per_minute),  # shared with the socket's sends
    )
    return Reply(201, doc)
