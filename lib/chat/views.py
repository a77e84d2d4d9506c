"""Read models the apps poll: a session's info, the customer's active view, and their besties."""

from __future__ import annotations

from typing import Any

import redis

from lib.chat.extensions import pending_for
from lib.chat.pairing import customer_pairing
from lib.chat.sessions import for_participant, live_of, session_doc
from lib.config.app import AppConfig
from lib.db import Database
from lib.pagination import Keyset
from lib.presence.availability import find_available_mitras
from lib.principal import Principal

BESTIES_ORDER = Keyset(("last_session_at", "time"), ("id", "uuid"))


def info(db: Database, who: Principal, session_id: str) -> dict[str, Any]:
    """The session as a participant re-syncs it (after a reconnect, with `messages?after=`)."""
    doc = session_doc(for_participant(db, who, session_id))
    doc["pending_extension"] = pending_for(db, session_id)
    return doc


def customer_active(db: Database, customer_id: str) -> dict[str, Any]:
    """`{pairing, session}`: the open search (or a targeted failure still open to a fallback), and
    the live session (closing ones too, until completed) with its unread count."""
    live = live_of(db, "customer", customer_id)
    return {
        "pairing": customer_pairing(db, customer_id),
        "session": session_doc(live[0]) if live else None,
    }


def besties(
    db: Database, valkey: redis.Redis, config: AppConfig, customer_id: str, query: dict[str, Any]
) -> dict[str, Any]:
    """The mitras this customer has talked to, most recent first, and whether each could take a
    targeted request ("curhat lagi") right now."""
    rows = db.fetch_all(
        "SELECT * FROM (SELECT m.id, m.display_name, count(*) AS sessions, max(s.started_at) AS last_session_at "
        "FROM chat_sessions s JOIN mitras m ON m.id = s.mitra_id "
        "WHERE s.customer_id = %(c)s AND s.started_at IS NOT NULL GROUP BY m.id) b "
        "WHERE (%(k0)s::timestamptz IS NULL OR (b.last_session_at, b.id) < (%(k0)s, %(k1)s)) "
        "ORDER BY b.last_session_at DESC, b.id DESC LIMIT %(n)s",
        {"c": customer_id, **BESTIES_ORDER.params(query)},
    )
    available = set(find_available_mitras(db, valkey, config)) if rows else set()
    return BESTIES_ORDER.page(
        rows,
        query["limit"],
        lambda r: {
            "id": r["id"],
            "display_name": r["display_name"],
            "sessions": r["sessions"],
            "last_session_at": r["last_session_at"],
            "available": str(r["id"]) in available,
        },
    )
