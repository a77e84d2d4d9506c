"""Go online (logged); counts as a heartbeat."""

from typing import Any

import falcon

from functions._shapes import MitraStatus
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(method="POST", route="/api/mitra/status/online", auth=Auth.MITRA, response=MitraStatus)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    presence = ctx.services.presence
    presence.set_online(ctx.principal.user_id, True)
    return presence.status(ctx.principal.user_id)
