"""Messages (DOMAIN.md): text of 1..4000 characters, stored (sealed) before anyone hears of it, idempotent
per sender on `client_message_id`; status sent (stored) -> delivered (the recipient's app acked)
-> read. Read receipts are cumulative: `message.status {message_id, status: read}` says that
message and every earlier one from its sender has been read."""

from __future__ import annotations

from functools import cache
from typing import Any

from psycopg import sql

from lib.chat import events as ev
from lib.chat.errors import SessionNotActive, SessionPaused
from lib.chat.events import ChatEvents, Party
from lib.chat.sessions import for_participant, party_column
from lib.db import Database
from lib.errors import NotFound, ValidationFailed
from lib.pagination import Keyset
from lib.principal import Principal
from lib.transcripts import Transcripts

MAX_LENGTH = 4000
ORDER = Keyset(("seq", "int"), descending=False)  # oldest first, as a chat reads


def message_doc(row: dict[str, Any], content: str) -> dict[str, Any]:
    """A stored message as both parties see it (API.md, WebSocket section); `content` is its text,
    which the row holds sealed (lib/transcripts.py)."""
    return {
        "id": row["id"],
        "session_id": row["session_id"],
        "client_message_id": row["client_message_id"],
        "sender_type": row["sender_type"],
        "kind": row["kind"],
        "content": content,
        "status": row["status"],
        "created_at": row["created_at"],
    }


def other_party(row: dict[str, Any], who: Principal) -> list[Party]:
    if who.user_type == "customer":
        return [ev.mitra(row["mitra_id"])] if row["mitra_id"] else []
    return [ev.customer(row["customer_id"])]


# The hot path in one statement: the participant check, the state check and the idempotent insert.
_SEND = sql.SQL(
    "WITH s AS (SELECT id, status, customer_id, mitra_id FROM chat_sessions WHERE id = %(s)s AND {party} = %(u)s), "
    "ins AS (INSERT INTO chat_messages (session_id, sender_type, sender_id, client_message_id, key_id, nonce, ciphertext) "
    "SELECT s.id, %(t)s, %(u)s, %(cm)s, %(k)s, %(n)s, %(c)s FROM s WHERE s.status = 'active' "
    "ON CONFLICT (session_id, sender_id, client_message_id) DO NOTHING RETURNING *) "
    "SELECT s.status AS session_status, s.customer_id AS session_customer, s.mitra_id AS session_mitra, ins.* "
    "FROM s LEFT JOIN ins ON true"
)


@cache
def _send_query(user_type: str) -> bytes:
    return _SEND.format(party=sql.Identifier(party_column(user_type))).as_bytes(None)


def send(
    db: Database,
    events: ChatEvents,
    transcripts: Transcripts,
    who: Principal,
    session_id: str,
    client_message_id: str,
    content: str,
) -> tuple[dict[str, Any], bool]:
    """(the stored message, whether this call stored it). A repeat of a `client_message_id` answers
    with the message stored the first time, and nobody hears of it twice."""
    if not content.strip():
        raise ValidationFailed({"content": ["Must not be blank."]})
    sealed = transcripts.seal(session_id, content)
    params = {
        "s": session_id,
        "t": who.user_type,
        "u": who.user_id,
        "cm": client_message_id,
        "k": sealed.key_id,
        "n": sealed.nonce,
        "c": sealed.ciphertext,
    }
    row = db.fetch_one(_send_query(who.user_type), params)
    if row is None:
        raise NotFound()  # another user's session looks like a missing one
    if row["id"] is None:
        earlier = db.fetch_one(
            "SELECT * FROM chat_messages WHERE session_id = %(s)s AND sender_id = %(u)s AND client_message_id = %(cm)s",
            params,
        )
        if earlier is not None:
            return message_doc(earlier, transcripts.open_row(earlier)), False
        raise SessionPaused() if row["session_status"] == "extending" else SessionNotActive()
    doc = message_doc(row, content)
    session = {"customer_id": row["session_customer"], "mitra_id": row["session_mitra"]}
    events.publish(other_party(session, who), "message.new", doc)
    return doc, True


def page(
    db: Database, transcripts: Transcripts, who: Principal, session_id: str, query: dict[str, Any]
) -> dict[str, Any]:
    """Messages oldest first, after `after` (a message id) when given, as a cursor page."""
    for_participant(db, who, session_id)
    after = 0
    if query.get("after"):
        row = db.fetch_one(
            "SELECT seq FROM chat_messages WHERE id = %(m)s AND session_id = %(s)s",
            {"m": query["after"], "s": session_id},
        )
        if row is None:
            raise ValidationFailed({"after": ["Not a message of this chat."]})
        after = int(row["seq"])
    rows = db.fetch_all(
        "SELECT * FROM chat_messages WHERE session_id = %(s)s AND seq > %(after)s "
        "AND (%(k0)s::bigint IS NULL OR seq > %(k0)s) ORDER BY seq LIMIT %(n)s",
        {"s": session_id, "after": after, **ORDER.params(query)},
    )
    return ORDER.page(rows, query["limit"], lambda r: message_doc(r, transcripts.open_row(r)))


_MARK = sql.SQL(
    "UPDATE chat_messages SET status = {status}, {stamp} = now() WHERE session_id = %(s)s AND sender_type <> %(me)s "
    "AND seq <= (SELECT seq FROM chat_messages WHERE id = %(m)s AND session_id = %(s)s) AND status = ANY(%(before)s) "
    "AND (%(only)s::uuid IS NULL OR id = %(only)s) RETURNING id, seq"
)


@cache
def _mark_query(status: str) -> bytes:
    stamp = sql.Identifier("read_at" if status == "read" else "delivered_at")
    return _MARK.format(status=sql.Literal(status), stamp=stamp).as_bytes(None)


def mark(db: Database, events: ChatEvents, who: Principal, session_id: str, message_id: str, status: str) -> list[str]:
    """`read`: every message from the other side up to `message_id`; `delivered`: that one. The
    sender hears `message.status` once, for the newest message that changed."""
    session = for_participant(db, who, session_id)
    if (
        db.fetch_one(
            "SELECT 1 FROM chat_messages WHERE id = %(m)s AND session_id = %(s)s", {"m": message_id, "s": session_id}
        )
        is None
    ):
        raise ValidationFailed({"message_id": ["Not a message of this chat."]})
    rows = db.fetch_all(
        _mark_query(status),
        {
            "s": session_id,
            "me": who.user_type,
            "m": message_id,
            "before": ["sent", "delivered"] if status == "read" else ["sent"],
            "only": None if status == "read" else message_id,
        },
    )
    if rows:
        newest = max(rows, key=lambda r: r["seq"])
        events.publish(other_party(session, who), "message.status", {"message_id": newest["id"], "status": status})
    return [str(r["id"]) for r in rows]
