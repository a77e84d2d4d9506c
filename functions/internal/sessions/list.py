"""Chat sessions, newest first; filter by status, mitra, customer, creation time and (audited) topic."""

from typing import Any

import falcon
from marshmallow import fields, validate

from functions._shapes import AdminSession
from lib.auth.permissions import role_allows
from lib.chat.control import admin_session_doc, listed_session_doc, search_sessions
from lib.chat.states import STATES
from lib.endpoint import Auth, Ctx, Endpoint
from lib.errors import Forbidden
from lib.pagination import NEWEST, PageQuery

TOPIC = "sessions.topic"


class Query(PageQuery):
    topic_sensitivity = fields.String(load_default=None, validate=validate.OneOf(["normal", "sensitive"]))
    status = fields.String(load_default=None, validate=validate.OneOf(STATES))
    mitra_id = fields.UUID(load_default=None)
    customer_id = fields.UUID(load_default=None)
    from_ = fields.AwareDateTime(load_default=None, data_key="from")
    to = fields.AwareDateTime(load_default=None)


ENDPOINT = Endpoint(
    method="GET",
    route="/internal/sessions",
    auth=Auth.CC_USER,
    permission="sessions.read",
    query=Query,
    response=AdminSession,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    q = ctx.query
    # The topic is shown, and filtered by, only for holders of sessions.topic, and each such read
    # is audited (docs/privacy.md); others see null and are refused the filter out loud.
    reader = ctx.principal.user_id if role_allows(ctx.principal.role, TOPIC) else None
    if q["topic_sensitivity"] is not None and reader is None:
        raise Forbidden("Filtering by topic needs the sessions.topic permission", code="FORBIDDEN")
    rows = search_sessions(ctx.services.db, {**q, "from": q["from_"]}, NEWEST.params(q), topic_reader=reader)
    return NEWEST.page(rows, q["limit"], admin_session_doc if reader else listed_session_doc)
