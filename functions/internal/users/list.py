"""List control-center users, newest first."""

from typing import Any

import falcon

from lib.auth.accounts import cc_user_doc
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pagination import PageQuery, keyset, page

ENDPOINT = Endpoint(
    method="GET", route="/internal/users", auth=Auth.CC_USER, permission="users.manage", query=PageQuery
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    rows = ctx.services.db.fetch_all(
        "SELECT * FROM cc_users WHERE (%(c)s::timestamptz IS NULL OR (created_at, id) < (%(c)s, %(i)s::uuid)) "
        "ORDER BY created_at DESC, id DESC LIMIT %(n)s",
        keyset(ctx.query),
    )
    return page(rows, ctx.query["limit"], cc_user_doc)
