"""Every operator tunable with its type, bounds and last change, plus the env values bounding them."""

from typing import Any

import falcon

from functions._shapes import ConfigView
from lib.config.app import describe
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(
    method="GET", route="/internal/config", auth=Auth.CC_USER, permission="config.read", response=ConfigView
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    return describe(ctx.services.config, ctx.services.settings)
