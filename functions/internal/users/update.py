"""Edit a control-center user; disabling or changing the role ends the user's sessions."""

from typing import Any

import falcon
from marshmallow import Schema, fields, validate

from functions._shapes import CcUser
from lib.auth.accounts import cc_user_doc
from lib.auth.permissions import ROLES
from lib.endpoint import Auth, Ctx, Endpoint
from lib.fields import Text


class Body(Schema):
    display_name = Text(validate=validate.Length(1, 80))
    role = fields.String(validate=validate.OneOf(ROLES))
    is_active = fields.Boolean()


ENDPOINT = Endpoint(
    method="PATCH",
    route="/internal/users/{user_id:uuid}",
    auth=Auth.CC_USER,
    permission="users.manage",
    body=Body,
    response=CcUser,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return cc_user_doc(ctx.services.accounts.update_cc_user(ctx.principal, str(ctx.params["user_id"]), ctx.body))
