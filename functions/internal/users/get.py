"""One control-center user."""

from typing import Any

import falcon

from functions._shapes import CcUser
from lib.auth.accounts import cc_user_doc
from lib.endpoint import Auth, Ctx, Endpoint
from lib.errors import NotFound

ENDPOINT = Endpoint(
    method="GET", route="/internal/users/{user_id:uuid}", auth=Auth.CC_USER, permission="users.manage", response=CcUser
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    row = ctx.services.db.fetch_one(
        "SELECT * FROM cc_users WHERE id = %(cc_user_id)s", {"cc_user_id": ctx.params["user_id"]}
    )
    if row is None:
        raise NotFound()
    return cc_user_doc(row)
