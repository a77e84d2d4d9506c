"""Chat sessions, newest first; filter by status, mitra, customer and creation time (no topic: privacy)."""

from typing import Any

import falcon
from marshmallow import ValidationError, fields, validate

from lib.chat.control import listed_session_doc, search_sessions
from lib.chat.states import STATES
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pagination import NEWEST, PageQuery


def _no_topic(_: object) -> None:
    raise ValidationError("The session list does not filter by topic (docs/privacy.md); open a session's record.")


class Query(PageQuery):
    # Refused out loud rather than ignored: an operator must not read all sessions as "the sensitive ones".
    topic_sensitivity = fields.Raw(load_default=None, validate=_no_topic)
    status = fields.String(load_default=None, validate=validate.OneOf(STATES))
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
    return NEWEST.page(search_sessions(ctx.services.db, filters, NEWEST.params(q)), q["limit"], listed_session_doc)
