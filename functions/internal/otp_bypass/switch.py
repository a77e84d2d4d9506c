"""Turn the whole bypass list on or off (the kill switch, app_config otp_bypass_enabled)."""

from typing import Any

import falcon
from marshmallow import Schema, fields

from lib.endpoint import Auth, Ctx, Endpoint


class Body(Schema):
    enabled = fields.Boolean(required=True)


class Switch(Schema):
    enabled = fields.Boolean()


ENDPOINT = Endpoint(
    method="PATCH",
    route="/internal/otp-bypass",
    auth=Auth.CC_USER,
    permission="config.write",
    body=Body,
    response=Switch,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    config = ctx.services.config
    config.set({"otp_bypass_enabled": ctx.body["enabled"]}, ctx.principal.user_id)
    return {"enabled": config.bool("otp_bypass_enabled")}
