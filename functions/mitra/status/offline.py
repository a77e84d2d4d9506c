"""Go offline (logged); no new requests reach this mitra."""

from typing import Any

import falcon

from functions._shapes import MitraStatus
from lib.endpoint import Auth, Ctx, Endpoint
from lib.presence.state import set_online, status_doc

ENDPOINT = Endpoint(method="POST", route="/api/mitra/status/offline", auth=Auth.MITRA, response=MitraStatus)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    s = ctx.services
    set_online(s.db, s.valkey, ctx.principal.user_id, False)
    return status_doc(s.db, s.config, s.settings.mitra_heartbeat_cadence_seconds, ctx.principal.user_id)
