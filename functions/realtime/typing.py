"""The user is typing: the other party hears it at once (at most once a second); nothing is stored."""

from lib.chat.events import customer, mitra
from lib.chat.sessions import for_participant
from lib.frames import Frame, FrameCtx

FRAME = Frame(type="typing", needs_session=True)


def handle(ctx: FrameCtx) -> None:
    assert ctx.session_id is not None
    s = ctx.services
    session_id = ctx.session_id
    # An app sends typing many times a minute: the socket's recent read of its session answers
    # (lib/frames.py, SessionMemo), not a query per frame.
    row = ctx.memo.get(lambda: for_participant(s.db, ctx.principal, session_id))
    other = mitra(row["mitra_id"]) if ctx.principal.user_type == "customer" else customer(row["customer_id"])
    if row["status"] == "active" and (ctx.principal.user_type == "mitra" or row["mitra_id"]) and ctx.memo.typing_due():
        s.chat_events.publish([other], "typing", {"session_id": session_id, "sender_type": ctx.principal.user_type})
