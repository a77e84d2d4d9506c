"""Send a message in the joined session; answered by message.sent with the stored message."""

from typing import Any

from marshmallow import Schema, fields, validate

from lib.chat.messages import MAX_LENGTH, send
from lib.frames import Frame, FrameCtx


class Body(Schema):
    client_message_id = fields.String(required=True, validate=validate.Length(1, 100))
    content = fields.String(required=True, validate=validate.Length(1, MAX_LENGTH))


FRAME = Frame(type="message.send", schema=Body, needs_session=True)


def handle(ctx: FrameCtx) -> dict[str, Any]:
    assert ctx.session_id is not None
    s = ctx.services
    doc, _ = send(
        s.db,
        s.chat_events,
        s.transcripts,
        ctx.principal,
        ctx.session_id,
        ctx.body["client_message_id"],
        ctx.body["content"],
    )
    return {"type": "message.sent", "data": doc}
