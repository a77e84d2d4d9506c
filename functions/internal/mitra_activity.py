"""How each Bestie answered its requests: notified, accepted, declined, missed, ignored, rates."""

from typing import Any

import falcon
from marshmallow import Schema, fields

from functions._shapes import Id, Time, nullable
from lib.chat.control import mitra_activity
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pagination import NEWEST, PageQuery


class Query(PageQuery):
    from_ = fields.AwareDateTime(load_default=None, data_key="from")
    to = fields.AwareDateTime(load_default=None)


class Activity(Schema):
    id = Id()
    display_name = fields.String()
    created_at = Time()
    notified = fields.Integer()
    accepted = fields.Integer()
    declined = fields.Integer()
    missed = fields.Integer()
    ignored = fields.Integer()
    avg_response_seconds = nullable(fields.Float)
    sensitive_sessions = fields.Integer()
    acceptance_rate = nullable(fields.Float)


ENDPOINT = Endpoint(
    method="GET",
    route="/internal/mitra-activity",
    auth=Auth.CC_USER,
    permission="mitras.read",
    query=Query,
    response=Activity,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    q = ctx.query
    rows = mitra_activity(ctx.services.db, {"from": q["from_"], "to": q["to"]}, NEWEST.params(q))
    return NEWEST.page(rows, q["limit"])
