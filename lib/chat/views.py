"""Read models the apps poll: a session's info, the customer's active view, and their besties."""

from __future__ import annotations

from typing import Any

import redis
from psycopg import sql

from lib.chat.extensions import pending_for
from lib.chat.pairing import pairing_doc
from lib.chat.sessions import COLUMNS, FROM, UNREAD_COUNT, for_participant, session_doc
from lib.chat.states import LIVE, OPEN, in_states
from lib.config.app import AppConfig
from lib.db import Database
from lib.kept import Changes, Kept
from lib.pagination import Keyset
from lib.presence.availability import find_available_mitras
from lib.principal import Principal

BESTIES_ORDER = Keyset(("last_session_at", "time"), ("id", "uuid"))
_BESTIES = sql.SQL(
    "SELECT b.*, COALESCE(o.is_online, false) AND b.is_active AS is_online FROM (SELECT m.id, m.display_name, "
    "m.is_active, count(*) AS sessions, max(s.started_at) AS last_session_at "
    "FROM chat_sessions s JOIN mitras m ON m.id = s.mitra_id "
    "WHERE s.customer_id = %(customer_id)s AND s.started_at IS NOT NULL GROUP BY m.id) b "
    "LEFT JOIN mitra_online_status o ON o.mitra_id = b.id "
    "WHERE {after} ORDER BY {order} LIMIT %(limit)s"
).format(after=BESTIES_ORDER.after("b"), order=BESTIES_ORDER.order("b"))


def info(db: Database, who: Principal, session_id: str) -> dict[str, Any]:
    """The session as a participant re-syncs it (after a reconnect, with `messages?after=`)."""
    doc = session_doc(for_participant(db, who, session_id))
    doc["pending_extension"] = pending_for(db, session_id)
    return doc


# The customer's open search (or a targeted failure still open to a fallback) and their first live
# session (closing ones too, until completed), in one round trip over the customer's open rows only
# (the one-open-per-customer index, and the few with a fallback window): as two queries they were
# half of GET /api/client/chat/active's time, and as two branches of a UNION ALL they cost
# PostgreSQL a third more than this single scan (pgbench, prepared).
_CUSTOMER_ACTIVE = (
    sql.SQL(
        "SELECT (s.status = 'searching' OR s.choice_expires_at > now()) AS is_pairing, {cols}, "
        "CASE WHEN s.targeted_mitra_id IS NOT NULL "
        "THEN (SELECT t.display_name FROM mitras t WHERE t.id = s.targeted_mitra_id) END AS targeted_name, "
        "CASE WHEN {live} THEN {unread} END AS unread_count {frm} "
        "WHERE s.customer_id = %(customer_id)s AND ({open} OR s.choice_expires_at IS NOT NULL)"
    )
    .format(
        cols=COLUMNS, frm=FROM, unread=UNREAD_COUNT, live=in_states("s.status", LIVE), open=in_states("s.status", OPEN)
    )
    .as_bytes(None)
)


def customer_active(db: Database, customer_id: str) -> dict[str, Any]:
    """`{pairing, session}`: the open search (or a targeted failure still open to a fallback), and
    the live session (closing ones too, until completed) with its unread count."""
    rows = db.fetch_all(_CUSTOMER_ACTIVE, {"customer_id": customer_id, "reader": "customer"})
    searches = [r for r in rows if r["is_pairing"]]
    live = [r for r in rows if r["status"] in LIVE]
    pairing = max(searches, key=lambda r: r["created_at"]) if searches else None
    session = min(live, key=lambda r: (r["started_at"], r["id"])) if live else None
    return {
        "pairing": pairing_doc(pairing, pairing["targeted_name"]) if pairing else None,
        "session": session_doc(session) if session else None,
    }


SESSION_CHANGES = "chat_sessions_changed"  # migrations/0012: the customer of every changed session row


def kept_active(changes: Changes, db: Database) -> Kept[dict[str, Any]]:
    """`customer_active` from memory when it is empty (no search, no live session: an idle app's
    poll), dropped on every change to one of the customer's sessions. Only an INSERT of a session
    turns an empty answer into another; a non-empty one carries an unread count and deadlines, and
    is always read."""
    return Kept(
        changes,
        SESSION_CHANGES,
        lambda customer_id: customer_active(db, customer_id),
        keep=lambda view: view["pairing"] is None and view["session"] is None,
    )


def besties(
    db: Database, valkey: redis.Redis, config: AppConfig, customer_id: str, query: dict[str, Any]
) -> dict[str, Any]:
    """The mitras this customer has talked to, most recent first: `is_online`, the online flag the
    app reads (the mitra's own online state, as in the Mitra document), and `available`, whether it
    could take a targeted request ("curhat lagi") right now (online, fresh heartbeat, a free slot);
    `available` stays because it shipped in this list's contract."""
    rows = db.fetch_all(_BESTIES, {"customer_id": customer_id, **BESTIES_ORDER.params(query)})
    available = set(find_available_mitras(db, valkey, config)) if rows else set()
    return BESTIES_ORDER.page(
        rows,
        query["limit"],
        lambda r: {
            "id": r["id"],
            "display_name": r["display_name"],
            "sessions": r["sessions"],
            "last_session_at": r["last_session_at"],
            "is_online": r["is_online"],
            "available": str(r["id"]) in available,
        },
    )
