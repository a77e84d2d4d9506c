"""Development only: set every active mitra online with a fresh heartbeat (deactivated mitras stay out)."""

from typing import Any

import falcon
from marshmallow import Schema, fields

from functions._shapes import Id
from lib.endpoint import Auth, Ctx, Endpoint
from lib.errors import Forbidden


class Body(Schema):
    """No fields: `{}` or no body."""


class Reset(Schema):
    online = fields.Integer()
    changed = fields.Integer()
    mitra_ids = fields.List(Id())


ENDPOINT = Endpoint(
    method="POST",
    route="/internal/_test/reset-all-mitras-online",
    auth=Auth.NONE,
    body=Body,
    dev_only=True,
    response=Reset,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    s = ctx.services
    active = [str(r["id"]) for r in s.db.fetch_all("SELECT id FROM mitras WHERE is_active ORDER BY created_at, id")]
    online: list[str] = []
    changed = 0
    for mitra_id in active:  # one by one through the real path, so each gets its log row and mirror keys
        try:
            changed += s.presence.set_online(mitra_id, True)
        except Forbidden:  # deactivated since the list was read: it stays offline
            continue
        online.append(mitra_id)
    return {"online": len(online), "changed": changed, "mitra_ids": online}
