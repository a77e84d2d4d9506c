"""After a targeted request failed, ask every available Bestie instead, with the same payment."""

from typing import Any

import falcon

from functions._shapes import Pairing
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(method="POST", route="/api/client/chat/fallback-to-blast", auth=Auth.CUSTOMER, response=Pairing)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return ctx.services.chat.fallback_to_blast(ctx.principal.user_id)
