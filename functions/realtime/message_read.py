"""The other side's messages are read up to this one: their sender hears message.status read."""

from marshmallow import Schema, fields

from lib.frames import Frame, FrameCtx


class Body(Schema):
    up_to_message_id = fields.UUID(required=True)


FRAME = Frame(type="message.read", schema=Body, needs_session=True)


def handle(ctx: FrameCtx) -> None:
    assert ctx.session_id is not None
    ctx.services.chat.mark(ctx.principal, ctx.session_id, str(ctx.body["up_to_message_id"]), "read")
