"""Approve or reject a customer's extension; approval opens its invoice."""

from typing import Any

import falcon
from marshmallow import Schema, fields, validate

from functions._shapes import Extension
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
    approve = ctx.body["decision"] == "approve"
    extension_id = str(ctx.params["extension_id"])
    return ctx.services.chat.respond_to_extension(ctx.principal, extension_id, approve)
