"""Operator-set support contacts (channel -> handle) for the apps' help screens."""

from typing import Any

import falcon

from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(method="GET", route="/api/shared/support-handles", auth=Auth.NONE)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    handles: dict[str, Any] = ctx.services.config.get("support_handles_json")
    return handles
