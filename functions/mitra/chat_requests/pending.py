"""The open requests this Bestie was asked to take, newest first."""

from typing import Any

import falcon

from functions._shapes import ChatRequest
from lib.chat.pairing import REQUEST_ORDER, mitra_requests, request_doc
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pagination import PageQuery

ENDPOINT = Endpoint(
    method="GET", route="/api/mitra/chat-requests/pending", auth=Auth.MITRA, query=PageQuery, response=ChatRequest
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    rows = mitra_requests(
        ctx.services.db, ctx.principal.user_id, open_only=True, position=REQUEST_ORDER.params(ctx.query)
    )
    return REQUEST_ORDER.page(rows, ctx.query["limit"], request_doc)
