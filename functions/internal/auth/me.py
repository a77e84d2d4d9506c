"""The signed-in control-center user, with role and permissions."""

from typing import Any

import falcon

from functions._shapes import CcUser
from lib.auth.accounts import load_account
from lib.endpoint import Auth, Ctx, Endpoint
from lib.errors import Unauthorized

ENDPOINT = Endpoint(method="GET", route="/internal/auth/me", auth=Auth.CC_USER, response=CcUser)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    with ctx.services.db.connection() as conn:
        account = load_account(conn, "cc_user", ctx.principal.user_id)
    if account is None:
        raise Unauthorized("Account not found")
    return account
