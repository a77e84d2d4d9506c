"""One mitra."""

from typing import Any

import falcon

from functions._shapes import Mitra
from lib.endpoint import Auth, Ctx, Endpoint
from lib.mitras import get_mitra

ENDPOINT = Endpoint(
    method="GET", route="/internal/mitras/{mitra_id:uuid}", auth=Auth.CC_USER, permission="mitras.read", response=Mitra
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    return get_mitra(ctx.services.db, str(ctx.params["mitra_id"]))
