"""This Bestie's closing and completed sessions, newest first."""

from typing import Any

import falcon

from functions._shapes import Session
from lib.chat.sessions import history_of, session_doc
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pagination import NEWEST, PageQuery

ENDPOINT = Endpoint(
    method="GET", route="/api/mitra/sessions/history", auth=Auth.MITRA, query=PageQuery, response=Session
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    rows = history_of(ctx.services.db, "mitra", ctx.principal.user_id, NEWEST.params(ctx.query))
    return NEWEST.page(rows, ctx.query["limit"], session_doc)
