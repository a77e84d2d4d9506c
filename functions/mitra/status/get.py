"""The mitra's own presence: online flag, live sessions, capacity and heartbeat settings."""

from typing import Any

import falcon

from functions._shapes import MitraStatus
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(method="GET", route="/api/mitra/status", auth=Auth.MITRA, response=MitraStatus)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return ctx.services.presence.status(ctx.principal.user_id)
