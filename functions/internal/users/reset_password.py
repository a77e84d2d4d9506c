"""Set a new password for a control-center user and end all of that user's sessions."""

import falcon
from marshmallow import Schema, fields, validate

from lib.auth.flows import revoke_sessions
from lib.auth.passwords import hash_password
from lib.endpoint import Auth, Ctx, Endpoint
from lib.errors import NotFound


class Body(Schema):
    password = fields.String(required=True, validate=validate.Length(1, 1024))


ENDPOINT = Endpoint(
    method="POST",
    route="/internal/users/{user_id:uuid}/reset-password",
    auth=Auth.CC_USER,
    permission="users.manage",
    body=Body,
)


def handle(req: falcon.Request, ctx: Ctx) -> None:
    user_id = str(ctx.params["user_id"])
    updated = ctx.services.db.execute(
        "UPDATE cc_users SET password_hash = %(h)s, password_changed_at = now(), failed_login_count = 0, "
        "locked_until = NULL, updated_at = now() WHERE id = %(id)s",
        {"h": hash_password(ctx.body["password"]), "id": user_id},
    )
    if not updated:
        raise NotFound()
    revoke_sessions(ctx.services, user=("cc_user", user_id), reason="password_reset")
