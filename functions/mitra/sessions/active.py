"""This Bestie's live sessions with their unread counts, oldest first."""

from typing import Any

import falcon

from functions._shapes import Session
from lib.chat.sessions import LIVE_ORDER, live_of, session_doc
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pagination import PageQuery

ENDPOINT = Endpoint(
    method="GET", route="/api/mitra/sessions/active", auth=Auth.MITRA, query=PageQuery, response=Session
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    rows = live_of(ctx.services.db, "mitra", ctx.principal.user_id, LIVE_ORDER.params(ctx.query))
    return LIVE_ORDER.page(rows, ctx.query["limit"], session_doc)
