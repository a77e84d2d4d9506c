"""Change the mitra heartbeat settings; stale_after may not be shorter than the heartbeat cadence."""

from typing import Any

import falcon
from marshmallow import Schema, fields

from functions._shapes import MitraPing
from lib.config.app import mitra_ping_doc
from lib.endpoint import Auth, Ctx, Endpoint
from lib.errors import ValidationFailed


class Body(Schema):
    require_ping = fields.Raw()
    stale_after_seconds = fields.Raw()


ENDPOINT = Endpoint(
    method="PATCH",
    route="/internal/config/mitra-ping",
    auth=Auth.CC_USER,
    permission="config.write",
    body=Body,
    response=MitraPing,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    s = ctx.services
    changes = {}
    if "require_ping" in ctx.body:
        changes["require_ping"] = ctx.body["require_ping"]
    if "stale_after_seconds" in ctx.body:
        changes["mitra_stale_after_seconds"] = ctx.body["stale_after_seconds"]
    try:
        s.config.set(changes, ctx.principal.user_id, s.settings)
    except ValidationFailed as exc:  # answer in this route's own field names
        fields_ = exc.details["fields"]
        if "mitra_stale_after_seconds" in fields_:
            fields_["stale_after_seconds"] = fields_.pop("mitra_stale_after_seconds")
        raise
    return mitra_ping_doc(s.config, s.settings)
