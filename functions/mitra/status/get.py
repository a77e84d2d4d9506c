"""The mitra's own presence: online flag, live sessions, capacity and heartbeat settings."""

from typing import Any

import falcon

from lib.endpoint import Auth, Ctx, Endpoint
from lib.presence import status_doc

ENDPOINT = Endpoint(method="GET", route="/api/mitra/status", auth=Auth.MITRA)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return status_doc(ctx.services, ctx.principal.user_id)
