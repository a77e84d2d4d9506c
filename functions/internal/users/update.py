"""Edit a control-center user; disabling or changing the role ends the user's sessions."""

from typing import Any

import falcon
from marshmallow import Schema, fields, validate

from lib.auth.accounts import cc_user_doc
from lib.auth.flows import revoke_sessions
from lib.auth.permissions import ROLES
from lib.endpoint import Auth, Ctx, Endpoint
from lib.errors import Conflict, NotFound


class Body(Schema):
    display_name = fields.String(validate=validate.Length(1, 80))
    role = fields.String(validate=validate.OneOf(ROLES))
    is_active = fields.Boolean()


ENDPOINT = Endpoint(
    method="PATCH",
    route="/internal/users/{user_id:uuid}",
    auth=Auth.CC_USER,
    permission="users.manage",
    body=Body,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    user_id, b = str(ctx.params["user_id"]), ctx.body
    if user_id == ctx.principal.user_id and (b.get("is_active") is False or b.get("role", "admin") != "admin"):
        raise Conflict("You cannot disable or demote yourself", code="SELF_LOCKOUT")
    with ctx.services.db.connection() as conn:
        before = conn.execute("SELECT * FROM cc_users WHERE id = %(id)s FOR UPDATE", {"id": user_id}).fetchone()
        if before is None:
            raise NotFound()
        row = conn.execute(
            "UPDATE cc_users SET display_name = COALESCE(%(n)s, display_name), role = COALESCE(%(r)s, role), "
            "is_active = COALESCE(%(a)s, is_active), updated_at = now() WHERE id = %(id)s RETURNING *",
            {"n": b.get("display_name"), "r": b.get("role"), "a": b.get("is_active"), "id": user_id},
        ).fetchone()
    assert row is not None
    if row["role"] != before["role"] or (before["is_active"] and not row["is_active"]):
        # Tokens carry the role, so a changed role or a disabled user must sign in again.
        revoke_sessions(ctx.services, user=("cc_user", user_id), reason="admin_revocation")
    return cc_user_doc(row)
