"""A session's messages, oldest first; `after` (a message id) re-syncs what came since."""

from typing import Any

import falcon
from marshmallow import fields

from functions._shapes import Message
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pagination import PageQuery


class Query(PageQuery):
    after = fields.UUID(load_default=None)


ENDPOINT = Endpoint(
    method="GET",
    route="/api/shared/chat/{session_id:uuid}/messages",
    auth=Auth.ANY_APP_USER,
    query=Query,
    response=Message,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return ctx.services.chat.messages(ctx.principal, str(ctx.params["session_id"]), dict(ctx.query))
