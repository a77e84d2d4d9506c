"""Ask for more time with a tier: the chat pauses while the Bestie decides (money only after yes)."""

import falcon
from marshmallow import Schema, fields

from functions._shapes import Extension
from lib.endpoint import Auth, Ctx, Endpoint, Reply


class Body(Schema):
    tier_id = fields.UUID(required=True)


ENDPOINT = Endpoint(
    method="POST",
    route="/api/client/chat/{session_id:uuid}/extensions",
    auth=Auth.CUSTOMER,
    body=Body,
    status=201,
    response=Extension,
)


def handle(req: falcon.Request, ctx: Ctx) -> Reply:
    assert ctx.principal is not None
    doc = ctx.services.chat.request_extension(ctx.principal, str(ctx.params["session_id"]), str(ctx.body["tier_id"]))
    return Reply(201, doc)
