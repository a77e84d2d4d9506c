"""Every request this Bestie was asked to take, the ones still open first, then newest first, with its answer."""

from typing import Any

import falcon
from marshmallow import fields

from functions._shapes import ChatRequest, nullable
from lib.chat.pairing import RECENT_ORDER, mitra_recent_requests, request_doc
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pagination import PageQuery


class RecentRequest(ChatRequest):
    response = nullable(fields.String, metadata={"description": "my answer to the notification"})


ENDPOINT = Endpoint(
    method="GET", route="/api/mitra/chat-requests/recent", auth=Auth.MITRA, query=PageQuery, response=RecentRequest
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    rows = mitra_recent_requests(ctx.services.db, ctx.principal.user_id, RECENT_ORDER.params(ctx.query))
    return RECENT_ORDER.page(rows, ctx.query["limit"], lambda r: {**request_doc(r), "response": r["response"]})
