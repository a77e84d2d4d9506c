"""Register the caller's push token (a mitra keeps one device: a new token replaces the old)."""

import falcon
from marshmallow import Schema, fields, validate

from lib.endpoint import Auth, Ctx, Endpoint


class Body(Schema):
    token = fields.String(required=True, validate=validate.Length(1, 4096))
    platform = fields.String(required=True, validate=validate.OneOf(["android", "ios"]))


ENDPOINT = Endpoint(method="PUT", route="/api/shared/devices/fcm-token", auth=Auth.ANY_APP_USER, body=Body)


def handle(req: falcon.Request, ctx: Ctx) -> None:
    assert ctx.principal is not None
    who = {
        "t": ctx.principal.user_type,
        "u": ctx.principal.user_id,
        "tok": ctx.body["token"],
        "p": ctx.body["platform"],
    }
    with ctx.services.db.connection() as conn:
        # A token moves with the device: whoever registered it last owns it.
        conn.execute(
            "INSERT INTO device_tokens (token, user_type, user_id, platform) VALUES (%(tok)s, %(t)s, %(u)s, %(p)s) "
            "ON CONFLICT (token) DO UPDATE SET user_type = EXCLUDED.user_type, user_id = EXCLUDED.user_id, "
            "platform = EXCLUDED.platform, updated_at = now()",
            who,
        )
        if ctx.principal.user_type == "mitra":
            conn.execute(
                "DELETE FROM device_tokens WHERE user_type = 'mitra' AND user_id = %(u)s AND token <> %(tok)s",
                who,
            )
