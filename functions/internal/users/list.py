"""List control-center users, newest first."""

from typing import Any

import falcon
from psycopg import sql

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

_LIST = sql.SQL("SELECT * FROM cc_users WHERE {after} ORDER BY {order} LIMIT %(limit)s").format(
    after=NEWEST.after(), order=NEWEST.order()
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    rows = ctx.services.db.fetch_all(_LIST, NEWEST.params(ctx.query))
    return NEWEST.page(rows, ctx.query["limit"], cc_user_doc)
