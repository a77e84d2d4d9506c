"""Activate or deactivate a mitra; deactivation ends all its sessions and drops it from availability."""

from typing import Any

import falcon
from marshmallow import Schema, fields

from functions._shapes import Mitra
from lib.endpoint import Auth, Ctx, Endpoint
from lib.errors import NotFound
from lib.mitras import get_mitra


class Body(Schema):
    is_active = fields.Boolean(required=True)


ENDPOINT = Endpoint(
    method="PATCH",
    route="/internal/mitras/{mitra_id:uuid}/status",
    auth=Auth.CC_USER,
    permission="mitras.manage",
    body=Body,
    response=Mitra,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    mitra_id = str(ctx.params["mitra_id"])
    if ctx.services.presence.set_active(mitra_id, ctx.body["is_active"]) is None:
        raise NotFound()
    return get_mitra(ctx.services.db, mitra_id)
