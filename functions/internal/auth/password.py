"""Change one's own control-center password; every other session of the user ends. Attempts per
user are limited (PASSWORD_CHANGE_ATTEMPTS per 15 minutes, then 429 RATE_LIMITED)."""

import falcon
from marshmallow import Schema, fields, validate

from lib.endpoint import Auth, Ctx, Endpoint


class Body(Schema):
    current_password = fields.String(required=True, validate=validate.Length(1, 1024))
    new_password = fields.String(required=True, validate=validate.Length(1, 1024))


ENDPOINT = Endpoint(method="POST", route="/internal/auth/password", auth=Auth.CC_USER, body=Body, status=204)


def handle(req: falcon.Request, ctx: Ctx) -> None:
    assert ctx.principal is not None
    ctx.services.accounts.change_password(ctx.principal, ctx.body["current_password"], ctx.body["new_password"])
