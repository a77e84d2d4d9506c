"""Approve or reject a customer's extension; approval opens its invoice."""

from typing import Any

import falcon
from marshmallow import Schema, fields, validate

from functions._shapes import Extension
from lib.chat.extensions import respond
from lib.endpoint import Auth, Ctx, Endpoint


class Body(Schema):
    decision = fields.String(required=True, validate=validate.OneOf(["approve", "reject"]))


ENDPOINT = Endpoint(
    method="POST",
    route="/api/mitra/extensions/{extension_id:uuid}/respond",
    auth=Auth.MITRA,
    body=Body,
    response=Extension,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    s = ctx.services
    approve = ctx.body["decision"] == "approve"
    extension_id = str(ctx.params["extension_id"])
    return respond(s.db, s.valkey, s.config, s.chat_events, s.payment_gateway, ctx.principal, extension_id, approve)
