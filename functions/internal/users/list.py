"""List control-center users, newest first."""

from typing import Any

import falcon

from functions._shapes import CcUser
from lib.auth.accounts import cc_user_doc
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pagination import NEWEST, PageQuery

ENDPOINT = Endpoint(
    method="GET",
    route="/internal/users",
    auth=Auth.CC_USER,
    permission="users.manage",
    query=PageQuery,
    response=CcUser,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    rows = ctx.services.db.fetch_all(
        "SELECT * FROM cc_users WHERE (%(k0)s::timestamptz IS NULL OR (created_at, id) < (%(k0)s, %(k1)s)) "
        "ORDER BY created_at DESC, id DESC LIMIT %(n)s",
        NEWEST.params(ctx.query),
    )
    return NEWEST.page(rows, ctx.query["limit"], cc_user_doc)
