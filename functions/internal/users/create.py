"""Create a control-center user with an initial password (no self-signup)."""

import falcon
from marshmallow import Schema, fields, validate

from functions._shapes import CcUser
from lib.auth.accounts import cc_user_doc
from lib.auth.permissions import ROLES
from lib.cc_users import create_cc_user
from lib.endpoint import Auth, Ctx, Endpoint, Reply
from lib.fields import Text


class Body(Schema):
    email = fields.Email(required=True, validate=validate.Length(3, 320))
    display_name = Text(required=True, validate=validate.Length(1, 80))
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    password = fields.String(required=True, validate=validate.Length(1, 1024))


ENDPOINT = Endpoint(
    method="POST",
    route="/internal/users",
    auth=Auth.CC_USER,
    permission="users.manage",
    body=Body,
    status=201,
    response=CcUser,
)


def handle(req: falcon.Request, ctx: Ctx) -> Reply:
    b = ctx.body
    created = create_cc_user(
        ctx.services.db,
        email=b["email"],
        password=b["password"],
        role=b["role"],
        display_name=b["display_name"],
    )
    row = ctx.services.db.fetch_one("SELECT * FROM cc_users WHERE id = %(cc_user_id)s", {"cc_user_id": created["id"]})
    assert row is not None
    return Reply(201, cc_user_doc(row))
