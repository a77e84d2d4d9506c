"""Send a message (the REST twin of the WebSocket send); idempotent on client_message_id."""

import falcon
from marshmallow import Schema, fields, validate

from functions._shapes import Message
from lib.chat.messages import MAX_LENGTH
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
    b = ctx.body
    # The message quota is shared with the socket's sends.
    doc, _ = ctx.services.chat.send(ctx.principal, str(ctx.params["session_id"]), b["client_message_id"], b["content"])
    return Reply(201, doc)
