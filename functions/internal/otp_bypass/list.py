"""The OTP bypass entries, newest first (the kill switch is `otp_bypass_enabled` in /internal/config)."""

from typing import Any

import falcon
from psycopg import sql

from functions._shapes import Bypass
from lib.endpoint import Auth, Ctx, Endpoint
from lib.otp_bypass import bypass_doc
from lib.pagination import NEWEST, PageQuery

ENDPOINT = Endpoint(
    method="GET",
    route="/internal/otp-bypass",
    auth=Auth.CC_USER,
    permission="config.write",
    query=PageQuery,
    response=Bypass,
)

_LIST = sql.SQL("SELECT * FROM otp_bypass_entries WHERE {after} ORDER BY {order} LIMIT %(limit)s").format(
    after=NEWEST.after(), order=NEWEST.order()
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    rows = ctx.services.db.fetch_all(_LIST, NEWEST.params(ctx.query))
    return NEWEST.page(rows, ctx.query["limit"], bypass_doc)
