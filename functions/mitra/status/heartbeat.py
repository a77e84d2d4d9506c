"""The mitra app's periodic ping: recorded in memory, written to Valkey in batches; 403 once deactivated."""

import falcon

from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(method="POST", route="/api/mitra/status/heartbeat", auth=Auth.MITRA, status=204)


def handle(req: falcon.Request, ctx: Ctx) -> None:
    assert ctx.principal is not None
    ctx.services.heartbeats.record(ctx.principal.user_id)
