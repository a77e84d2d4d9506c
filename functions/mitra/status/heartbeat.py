"""The mitra app's periodic ping: Valkey only, no PostgreSQL write; 403 once deactivated."""

import falcon

from lib.endpoint import Auth, Ctx, Endpoint
from lib.presence.state import heartbeat

ENDPOINT = Endpoint(method="POST", route="/api/mitra/status/heartbeat", auth=Auth.MITRA)


def handle(req: falcon.Request, ctx: Ctx) -> None:
    assert ctx.principal is not None
    heartbeat(ctx.services.db, ctx.services.valkey, ctx.principal.user_id)
