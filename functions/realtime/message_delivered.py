"""The app received a message: its sender hears message.status delivered."""

from marshmallow import Schema, fields

from lib.frames import Frame, FrameCtx


class Body(Schema):
    message_id = fields.UUID(required=True)


FRAME = Frame(type="message.delivered", schema=Body, needs_session=True)


def handle(ctx: FrameCtx) -> None:
    assert ctx.session_id is not None
    ctx.services.chat.mark(ctx.principal, ctx.session_id, str(ctx.body["message_id"]), "delivered")
