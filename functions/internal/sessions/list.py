"""Chat sessions, newest first; filter by status, topic, mitra, customer and creation time."""

from typing import Any

import falcon
from marshmallow import fields, validate

from lib.chat.control import admin_session_doc, search_sessions
from lib.chat.states import STATES
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pagination import NEWEST, PageQuery


class Query(PageQuery):
    status = fields.String(load_default=None, validate=validate.OneOf(STATES))
    topic_sensitivity = fields.String(load_default=None, validate=validate.OneOf(["normal", "sensitive"]))
    mitra_id = fields.UUID(load_default=None)
    customer_id = fields.UUID(load_default=None)
    from_ = fields.AwareDateTime(load_default=None, data_key="from")
    to = fields.AwareDateTime(load_default=None)


ENDPOINT = Endpoint(
    method="GET", route="/internal/sessions", auth=Auth.CC_USER, permission="sessions.read", query=Query
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    q = ctx.query
    filters = {**q, "from": q["from_"]}
    return NEWEST.page(search_sessions(ctx.services.db, filters, NEWEST.params(q)), q["limit"], admin_session_doc)
