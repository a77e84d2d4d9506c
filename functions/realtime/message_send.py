"""Send a message in the joined session; answered by message.sent with the stored message."""

from typing import Any

from marshmallow import Schema, fields, validate

from lib.chat.messages import MAX_CLIENT_ID, MAX_LENGTH, Outgoing
from lib.errors import ApiError
from lib.frames import Frame, FrameCtx


class Body(Schema):
    client_message_id = fields.String(required=True, validate=validate.Length(1, MAX_CLIENT_ID))
    content = fields.String(required=True, validate=validate.Length(1, MAX_LENGTH))


FRAME = Frame(type="message.send", schema=Body, needs_session=True)


def handle_batch(batch: list[FrameCtx]) -> list[dict[str, Any] | ApiError]:
    items = [Outgoing(c.principal, c.session_id or "", c.body["client_message_id"], c.body["content"]) for c in batch]
    return [
        outcome if isinstance(outcome, ApiError) else {"type": "message.sent", "data": outcome[0]}
        for outcome in batch[0].services.chat.send_many(items)  # one quota count for the batch
    ]
