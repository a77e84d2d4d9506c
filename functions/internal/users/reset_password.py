"""Set a new password for a control-center user and end all of that user's sessions."""

import falcon
from marshmallow import Schema, fields, validate

from lib.endpoint import Auth, Ctx, Endpoint


class Body(Schema):
    password = fields.String(required=True, validate=validate.Length(1, 1024))


ENDPOINT = Endpoint(
    method="POST",
    route="/internal/users/{user_id:uuid}/reset-password",
    auth=Auth.CC_USER,
    permission="users.manage",
    body=Body,
    status=204,
)


def handle(req: falcon.Request, ctx: Ctx) -> None:
    ctx.services.accounts.reset_password(str(ctx.params["user_id"]), ctx.body["password"])
