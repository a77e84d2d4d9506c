"""Development only: set a mitra offline, as its app's own "offline" switch does; no new request reaches it."""

from typing import Any

import falcon

from functions._shapes import ForcedStatus
from functions.internal.testing._mitras import MitraRef, switch
from lib.endpoint import Auth, Ctx, Endpoint


class Body(MitraRef):
    """The mitra, by mitra_id or phone."""


ENDPOINT = Endpoint(
    method="POST",
    route="/internal/_test/force-mitra-offline",
    auth=Auth.NONE,
    body=Body,
    dev_only=True,
    response=ForcedStatus,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    return switch(ctx, False)
