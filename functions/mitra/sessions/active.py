"""This Bestie's live sessions with their unread counts, oldest first."""

from typing import Any

import falcon

from lib.chat.sessions import live_of, session_doc
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pagination import PageQuery

ENDPOINT = Endpoint(method="GET", route="/api/mitra/sessions/active", auth=Auth.MITRA, query=PageQuery)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    # At most max_customers_per_mitra (<= 20) rows: always one page.
    rows = live_of(ctx.services.db, "mitra", ctx.principal.user_id)
    return {"items": [session_doc(r) for r in rows], "next_cursor": None, "has_more": False}
