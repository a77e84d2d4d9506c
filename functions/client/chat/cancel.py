"""Cancel the current search or targeted wait (the payment is listed for a refund)."""

from typing import Any

import falcon
from marshmallow import Schema, fields

from functions._shapes import Id
from lib.endpoint import Auth, Ctx, Endpoint


class Cancelled(Schema):
    session_id = Id()
    status = fields.String(metadata={"enum": ["cancelled"]})


ENDPOINT = Endpoint(method="POST", route="/api/client/chat/cancel", auth=Auth.CUSTOMER, response=Cancelled)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return ctx.services.chat.cancel(ctx.principal.user_id)
