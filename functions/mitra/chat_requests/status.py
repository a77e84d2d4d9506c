"""Where a request stands for this Bestie: open, accepted (by me), taken, cancelled or expired."""

from typing import Any

import falcon
from marshmallow import Schema, fields

from functions._shapes import Id, nullable
from lib.chat.pairing import request_status
from lib.endpoint import Auth, Ctx, Endpoint


class RequestStatus(Schema):
    session_id = Id()
    status = fields.String(metadata={"description": "open | accepted (by me) | taken | cancelled | expired ..."})
    response = nullable(fields.String, metadata={"description": "my answer to the notification"})


ENDPOINT = Endpoint(
    method="GET", route="/api/mitra/chat-requests/{session_id:uuid}/status", auth=Auth.MITRA, response=RequestStatus
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return request_status(ctx.services.db, ctx.principal.user_id, str(ctx.params["session_id"]))
