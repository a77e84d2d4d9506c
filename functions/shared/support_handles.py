"""Operator-set support contacts (channel -> handle) for the apps' help screens."""

from typing import Any

import falcon
from marshmallow import Schema

from lib.endpoint import Auth, Ctx, Endpoint


class Handles(Schema):
    """The operators' `support_handles_json`, sent as it is stored: handle name -> contact."""

    class Meta:
        unknown = "include"


ENDPOINT = Endpoint(method="GET", route="/api/shared/support-handles", auth=Auth.NONE, response=Handles)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    handles: dict[str, Any] = ctx.services.config.get("support_handles_json")
    return handles
