"""Change one's own control-center password; every other session of the user ends."""

import falcon
from marshmallow import Schema, fields, validate

from lib.auth.flows import revoke_sessions
from lib.auth.passwords import hash_password, verify_password
from lib.endpoint import Auth, Ctx, Endpoint
from lib.errors import Unauthorized


class Body(Schema):
    current_password = fields.String(required=True, validate=validate.Length(1, 1024))
    new_password = fields.String(required=True, validate=validate.Length(1, 1024))


ENDPOINT = Endpoint(method="POST", route="/internal/auth/password", auth=Auth.CC_USER, body=Body)


def handle(req: falcon.Request, ctx: Ctx) -> None:
    assert ctx.principal is not None
    db = ctx.services.db
    row = db.fetch_one("SELECT password_hash FROM cc_users WHERE id = %(id)s", {"id": ctx.principal.user_id})
    if row is None or not verify_password(ctx.body["current_password"], row["password_hash"]):
        raise Unauthorized("Current password is wrong", code="INVALID_CREDENTIALS")
    new_hash = hash_password(ctx.body["new_password"], field="new_password")
    db.execute(
        "UPDATE cc_users SET password_hash = %(h)s, password_changed_at = now(), updated_at = now() WHERE id = %(id)s",
        {"h": new_hash, "id": ctx.principal.user_id},
    )
    revoke_sessions(
        ctx.services,
        user=("cc_user", ctx.principal.user_id),
        keep=ctx.principal.session_id,
        reason="password_changed",
    )
