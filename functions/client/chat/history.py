"""The customer's closing and completed sessions, the most recently ended first."""

from typing import Any

import falcon

from functions._shapes import Session
from lib.chat.sessions import ENDED_ORDER, history_of, session_doc
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pagination import PageQuery

ENDPOINT = Endpoint(
    method="GET", route="/api/client/chat/history", auth=Auth.CUSTOMER, query=PageQuery, response=Session
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    position = ENDED_ORDER.params(ctx.query)
    rows = history_of(ctx.services.db, "customer", ctx.principal.user_id, position, by="ended")
    return ENDED_ORDER.page(rows, ctx.query["limit"], session_doc)
