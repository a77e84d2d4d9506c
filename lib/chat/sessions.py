"""Chat sessions as the apps and the control center see them, and who may see which: a customer
only their own, a mitra only the sessions it holds (after a reroute, no longer the old ones)."""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from psycopg import sql

from lib.auth.accounts import CALL_NAME_FALLBACK
from lib.chat.states import LIVE, in_states
from lib.db import Conn, Database
from lib.errors import NotFound
from lib.pagination import NEWEST, Keyset
from lib.principal import Principal

# Every read of a session carries the two parties' names (call names only: never phone or e-mail).
# The mitra's as a scalar subquery, not a LEFT JOIN: the same row (a primary-key lookup), and the
# live chat/active statement ran ~25% more often a second with it (pgbench, docs/db_reads.md).
COLUMNS = sql.SQL(
    "s.*, c.display_name AS customer_name, (SELECT m.display_name FROM mitras m WHERE m.id = s.mitra_id) AS mitra_name"
)
FROM = sql.SQL("FROM chat_sessions s JOIN customers c ON c.id = s.customer_id")
SELECT = sql.SQL("SELECT {} {}").format(COLUMNS, FROM)
BY_ID = sql.SQL("{} WHERE s.id = %(session_id)s").format(SELECT)
# Messages the reader has not read yet: the other side's, not yet `read`.
UNREAD_COUNT = sql.SQL(
    "(SELECT count(*) FROM chat_messages u WHERE u.session_id = s.id "
    "AND u.sender_type <> %(reader)s AND u.status <> 'read')"
)
UNREAD = sql.SQL("{} AS unread_count").format(UNREAD_COUNT)


def call_name(display_name: str | None) -> str:
    return display_name or CALL_NAME_FALLBACK


def session_doc(row: dict[str, Any]) -> dict[str, Any]:
    doc = {
        "id": row["id"],
        "status": row["status"],
        "mode": row["mode"],
        "duration_minutes": row["duration_minutes"],
        "topic_sensitivity": row["topic_sensitivity"],
        "started_at": row["started_at"],
        "expires_at": row["expires_at"],
        "ended_at": row["ended_at"],
        "ended_by": row["ended_by"],
        "customer": {"call_name": call_name(row["customer_name"])},
        "mitra": {"id": row["mitra_id"], "display_name": row["mitra_name"]} if row["mitra_id"] else None,
    }
    if row["status"] == "closing":
        doc["closing"] = {
            "expires_at": row["closing_expires_at"],
            "customer_done": row["customer_closing"] is not None,
            "mitra_done": row["mitra_closing"] is not None,
        }
    if "unread_count" in row:
        doc["unread_count"] = row["unread_count"]
    return doc


def party_column(user_type: str) -> str:
    if user_type not in ("customer", "mitra"):
        raise NotFound()
    return "customer_id" if user_type == "customer" else "mitra_id"


@cache
def _participant_query(user_type: str, lock: bool) -> bytes:
    # Composed once per shape: formatting a Composed costs ~10 us a call on the message path.
    return (
        sql.SQL("{select} WHERE s.id = %(session_id)s AND s.{party} = %(user)s{lock}")
        .format(
            select=SELECT,
            party=sql.Identifier(party_column(user_type)),
            lock=sql.SQL(" FOR UPDATE OF s") if lock else sql.SQL(""),
        )
        .as_bytes(None)
    )


def for_participant(db: Database | Conn, who: Principal, session_id: str, *, lock: bool = False) -> dict[str, Any]:
    """The session if `who` takes part in it, else 404 (another user's session looks missing)."""
    query = _participant_query(who.user_type, lock)
    params = {"session_id": session_id, "user": who.user_id}
    row = db.execute(query, params).fetchone() if not isinstance(db, Database) else db.fetch_one(query, params)
    if row is None:
        raise NotFound()
    return row


LIVE_ORDER = Keyset(("started_at", "time"), ("id", "uuid"), descending=False)


@cache  # composed once per user type, to bytes: composing on every call was ~10% of chat/active's time
def _live_query(user_type: str) -> bytes:
    return (
        sql.SQL(
            "SELECT {cols}, {unread} {frm} WHERE s.{party} = %(user)s AND {live} "
            "AND {after} ORDER BY {order} LIMIT %(limit)s"
        )
        .format(
            cols=COLUMNS,
            unread=UNREAD,
            frm=FROM,
            party=sql.Identifier(party_column(user_type)),
            live=in_states("s.status", LIVE),
            after=LIVE_ORDER.after("s"),
            order=LIVE_ORDER.order("s"),
        )
        .as_bytes(None)
    )


def live_of(db: Database, user_type: str, user_id: str, position: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The user's live sessions (active, extending, closing) with their unread counts, oldest
    first; `position` is LIVE_ORDER.params(query), all of them without it."""
    return db.fetch_all(
        _live_query(user_type), {"user": user_id, "reader": user_type, **(position or LIVE_ORDER.first())}
    )


# The customer's history reads by when each session ended (issue 26: the original's order), newest
# first. A closing or completed session always has ended_at; the fallbacks only keep the sort key
# non-null (a keyset cursor cannot hold a NULL) for rows written some other way.
ENDED_ORDER = Keyset(("history_at", "time"), ("id", "uuid"))
_ENDED_AT = sql.SQL("COALESCE(s.ended_at, s.completed_at, s.created_at)")
_HISTORY_KEYS = {
    "created": (sql.SQL("s.created_at"), NEWEST.after("s"), NEWEST.order("s")),
    "ended": (_ENDED_AT, ENDED_ORDER.after("s", history_at=_ENDED_AT), ENDED_ORDER.order("s", history_at=_ENDED_AT)),
}


def history_of(
    db: Database, user_type: str, user_id: str, position: dict[str, Any], *, by: Literal["created", "ended"] = "created"
) -> list[dict[str, Any]]:
    """Closing and completed sessions, newest first by creation (`position` is NEWEST.params) or,
    with `by="ended"`, by when they ended (`position` is ENDED_ORDER.params)."""
    key, after, order = _HISTORY_KEYS[by]
    query = sql.SQL(
        "SELECT {cols}, {key} AS history_at {frm} WHERE s.{party} = %(user)s AND s.status IN ('closing', 'completed') "
        "AND {after} ORDER BY {order} LIMIT %(limit)s"
    ).format(cols=COLUMNS, key=key, frm=FROM, party=sql.Identifier(party_column(user_type)), after=after, order=order)
    return db.fetch_all(query, {"user": user_id, **position})
