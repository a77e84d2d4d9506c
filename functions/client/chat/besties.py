"""The Besties this customer has talked to, each with is_online (the online flag) and available (can take a "curhat lagi" now)."""

from typing import Any

import falcon

from lib.chat.views import besties
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pagination import PageQuery

ENDPOINT = Endpoint(method="GET", route="/api/client/chat/besties", auth=Auth.CUSTOMER, query=PageQuery)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    s = ctx.services
    return besties(s.db, s.valkey, s.config, ctx.principal.user_id, dict(ctx.query))
