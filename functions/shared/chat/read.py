"""Mark the other side's messages read, up to and including one message."""

import falcon
from marshmallow import Schema, fields

from lib.endpoint import Auth, Ctx, Endpoint


class Body(Schema):
    up_to_message_id = fields.UUID(required=True)


ENDPOINT = Endpoint(
    method="POST", route="/api/shared/chat/{session_id:uuid}/read", auth=Auth.ANY_APP_USER, body=Body, status=204
)


def handle(req: falcon.Request, ctx: Ctx) -> None:
    assert ctx.principal is not None
    ctx.services.chat.mark(ctx.principal, str(ctx.params["session_id"]), str(ctx.body["up_to_message_id"]), "read")
