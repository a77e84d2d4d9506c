"""The mitra heartbeat settings in the original control center's shape."""

from typing import Any

import falcon

from functions._shapes import MitraPing
from lib.config.app import mitra_ping_doc
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(
    method="GET", route="/internal/config/mitra-ping", auth=Auth.CC_USER, permission="config.read", response=MitraPing
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    return mitra_ping_doc(ctx.services.config, ctx.services.settings)
