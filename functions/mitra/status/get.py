"""The mitra's own presence: online flag, live sessions, capacity and heartbeat settings."""

from typing import Any

import falcon

from functions._shapes import MitraStatus
from lib.endpoint import Auth, Ctx, Endpoint
from lib.presence.state import status_doc

ENDPOINT = Endpoint(method="GET", route="/api/mitra/status", auth=Auth.MITRA, response=MitraStatus)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    s = ctx.services
    return status_doc(s.db, s.config, s.settings.mitra_heartbeat_cadence_seconds, ctx.principal.user_id)
