"""Forget a push token of the caller (or all of them when no token is given)."""

import falcon
from marshmallow import Schema, fields, validate

from lib.endpoint import Auth, Ctx, Endpoint


class Body(Schema):
    token = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 4096))
    platform = fields.String(load_default=None, allow_none=True)


ENDPOINT = Endpoint(
    method="DELETE", route="/api/shared/devices/fcm-token", auth=Auth.ANY_APP_USER, body=Body, status=204
)


def handle(req: falcon.Request, ctx: Ctx) -> None:
    assert ctx.principal is not None
    ctx.services.db.execute(
        "DELETE FROM device_tokens WHERE user_type = %(user_type)s AND user_id = %(user_id)s "
        "AND (%(token)s::text IS NULL OR token = %(token)s)",
        {"user_type": ctx.principal.user_type, "user_id": ctx.principal.user_id, "token": ctx.body["token"]},
    )
