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
        "DELETE FROM device_tokens WHERE user_type = %(t)s AND user_id = %(u)s "
        "AND (%(tok)s::text IS NULL OR token = %(tok)s)",
        {"t": ctx.principal.user_type, "u": ctx.principal.user_id, "tok": ctx.body["token"]},
    )
