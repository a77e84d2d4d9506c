"""How each Bestie answered its requests: notified, accepted, declined, missed, ignored, rates."""

from typing import Any

import falcon
from marshmallow import fields

from lib.chat.control import mitra_activity
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pagination import NEWEST, PageQuery


class Query(PageQuery):
    from_ = fields.AwareDateTime(load_default=None, data_key="from")
    to = fields.AwareDateTime(load_default=None)


ENDPOINT = Endpoint(
    method="GET", route="/internal/mitra-activity", auth=Auth.CC_USER, permission="mitras.read", query=Query
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    q = ctx.query
    rows = mitra_activity(ctx.services.db, {"from": q["from_"], "to": q["to"]}, NEWEST.params(q))
    return NEWEST.page(rows, q["limit"])
