"""Register the caller's push token. A user keeps at most DEVICE_TOKENS_PER_USER devices (a mitra
keeps one): registering one more removes the least recently registered."""

import falcon
from marshmallow import Schema, fields, validate

from lib.endpoint import Auth, Ctx, Endpoint


class Body(Schema):
    token = fields.String(required=True, validate=validate.Length(1, 4096))
    platform = fields.String(required=True, validate=validate.OneOf(["android", "ios"]))


ENDPOINT = Endpoint(method="PUT", route="/api/shared/devices/fcm-token", auth=Auth.ANY_APP_USER, body=Body, status=204)


def handle(req: falcon.Request, ctx: Ctx) -> None:
    assert ctx.principal is not None
    who = {
        "user_type": ctx.principal.user_type,
        "user_id": ctx.principal.user_id,
        "token": ctx.body["token"],
        "platform": ctx.body["platform"],
        "keep": 1 if ctx.principal.user_type == "mitra" else ctx.services.settings.device_tokens_per_user,
    }
    with ctx.services.db.connection() as conn:
        # One registration of a user at a time, so two at once cannot both keep `keep` others.
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('device-tokens:' || %(user_type)s || ':' || %(user_id)s, 0))",
            who,
        )
        # A token moves with the device: whoever registered it last owns it. clock_timestamp(), not
        # now(): the order of registrations is the order they got the lock in.
        conn.execute(
            "INSERT INTO device_tokens (token, user_type, user_id, platform, updated_at) "
            "VALUES (%(token)s, %(user_type)s, %(user_id)s, %(platform)s, clock_timestamp()) "
            "ON CONFLICT (token) DO UPDATE SET user_type = EXCLUDED.user_type, user_id = EXCLUDED.user_id, "
            "platform = EXCLUDED.platform, updated_at = EXCLUDED.updated_at",
            who,
        )
        conn.execute(
            "DELETE FROM device_tokens WHERE token IN (SELECT token FROM device_tokens "
            "WHERE user_type = %(user_type)s AND user_id = %(user_id)s "
            "ORDER BY token = %(token)s DESC, updated_at DESC, created_at DESC, token OFFSET %(keep)s)",
            who,
        )
