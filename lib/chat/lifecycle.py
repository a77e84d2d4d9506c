"""A session from its first minute to `completed` (DOMAIN.md, "Session lifecycle"): the server's
clock ends it at `expires_at`, either side may end it early (the mitra only when allowed), then
each side leaves one goodbye or skips it and the session completes, or the grace runs out. Also
the topic flag, and the control center moving a session to another mitra.
"""

from __future__ import annotations

from typing import Any

import redis
from psycopg import sql

from lib.chat import events as ev
from lib.chat.errors import MitraUnavailable, SessionNotActive, SessionNotClosing
from lib.chat.events import ChatEvents
from lib.chat.messages import message_doc
from lib.chat.outbox import Outbox, observe_lateness
from lib.chat.sessions import BY_ID, for_participant, session_doc
from lib.chat.states import LIVE
from lib.config.app import AppConfig
from lib.db import Conn, Database
from lib.errors import Conflict, Forbidden, NotFound
from lib.payments.closures import expire_pending
from lib.presence.availability import find_available_mitras
from lib.presence.state import live_sessions
from lib.principal import Principal
from lib.transcripts import Transcripts

CLOSING_GRACE_SECONDS = 300


def parties(row: dict[str, Any]) -> list[ev.Party]:
    found = [ev.customer(row["customer_id"])]
    if row["mitra_id"]:
        found.append(ev.mitra(row["mitra_id"]))
    return found


def _closing_event(row: dict[str, Any]) -> dict[str, Any]:
    return {"session_id": row["id"], "ended_by": row["ended_by"], "closing_expires_at": row["closing_expires_at"]}


# The one statement that starts closing: ending early, the clock, an extension that came to nothing.
_BEGIN_CLOSING = """
UPDATE chat_sessions SET status = 'closing', ended_at = now(), ended_by = %(ended_by)s, paused_at = NULL,
       closing_expires_at = now() + make_interval(secs => %(grace_seconds)s), updated_at = now()
WHERE id = %(session_id)s AND status IN ('active', 'extending') RETURNING *
"""


def end_early(
    db: Database, valkey: redis.Redis, config: AppConfig, events: ChatEvents, who: Principal, session_id: str
) -> dict[str, Any]:
    """The customer may always end; the mitra only with `early_end_mitra_enabled`."""
    if who.user_type == "mitra" and not config.bool("early_end_mitra_enabled"):
        raise Forbidden("Ending a chat early is not enabled for Besties", code="EARLY_END_DISABLED")
    outbox = Outbox()
    with db.connection() as conn:
        row = for_participant(conn, who, session_id, lock=True)
        if row["status"] in ("active", "extending"):
            closed = conn.execute(
                _BEGIN_CLOSING,
                {"session_id": session_id, "ended_by": who.user_type, "grace_seconds": CLOSING_GRACE_SECONDS},
            ).fetchone()
            assert closed is not None
            cancelled = conn.execute(
                "UPDATE session_extensions SET status = 'cancelled' WHERE session_id = %(session_id)s "
                "AND status IN ('pending', 'approved') RETURNING payment_request_id",
                {"session_id": session_id},
            ).fetchall()
            _drop_extension_invoices(conn, [c["payment_request_id"] for c in cancelled if c["payment_request_id"]])
            outbox.add(parties(closed), "session.closing", _closing_event(closed))
        elif row["status"] != "closing":
            raise SessionNotActive()
        doc = session_doc(for_participant(conn, who, session_id))
    outbox.flush(db, valkey, events)
    return doc


def _drop_extension_invoices(conn: Conn, request_ids: list[Any]) -> None:
    """An approved extension's invoice no longer buys anything once the chat ends: its request
    expires and the invoice is queued for closing at Xendit. Paid meanwhile, it is refunded
    (EXTENSION_NOT_APPLIED, lib/payments/settle.py and apply_payment)."""
    for request_id in request_ids:
        expire_pending(conn, request_id, "extension_cancelled")


def begin_closing(conn: Conn, outbox: Outbox, session_id: str, ended_by: str) -> bool:
    closed = conn.execute(
        _BEGIN_CLOSING, {"session_id": session_id, "ended_by": ended_by, "grace_seconds": CLOSING_GRACE_SECONDS}
    ).fetchone()
    if closed is not None:
        outbox.add(parties(closed), "session.closing", _closing_event(closed))
    return closed is not None


def resume(conn: Conn, outbox: Outbox, session_id: str, added_minutes: int) -> None:
    """End an `extending` pause: with the minutes bought added (paid), or with only what was left
    before the pause (rejected, unpaid); with nothing left, the session closes."""
    row = conn.execute(
        "UPDATE chat_sessions SET status = 'active', "
        "expires_at = now() + GREATEST(expires_at - paused_at, interval '0') + make_interval(mins => %(added_minutes)s), "
        "duration_minutes = duration_minutes + %(added_minutes)s, paused_at = NULL, updated_at = now() "
        "WHERE id = %(session_id)s AND status = 'extending' AND (%(added_minutes)s > 0 OR expires_at > paused_at) "
        "RETURNING *",
        {"session_id": session_id, "added_minutes": added_minutes},
    ).fetchone()
    if row is not None:
        kind = "session.extended" if added_minutes else "session.resumed"
        outbox.add(parties(row), kind, {"session_id": session_id, "expires_at": row["expires_at"]})
    else:
        begin_closing(conn, outbox, session_id, "system")


def closing_message(
    db: Database,
    valkey: redis.Redis,
    events: ChatEvents,
    transcripts: Transcripts,
    who: Principal,
    session_id: str,
    content: str | None,
) -> dict[str, Any]:
    """One goodbye (or a skip) per side while closing; both done -> completed."""
    side = "customer_closing" if who.user_type == "customer" else "mitra_closing"
    outbox = Outbox()
    with db.connection() as conn:
        row = for_participant(conn, who, session_id, lock=True)
        if row["status"] != "closing":
            raise SessionNotClosing()
        if row[side] is None:
            if content is not None:
                sealed = transcripts.seal(session_id, content)
                message = conn.execute(
                    "INSERT INTO chat_messages (session_id, sender_type, sender_id, client_message_id, kind, "
                    "key_id, nonce, ciphertext) VALUES (%(session_id)s, %(sender_type)s, %(sender_id)s, 'closing', "
                    "'closing', %(key_id)s, %(nonce)s, %(ciphertext)s) RETURNING *",
                    {
                        "session_id": session_id,
                        "sender_type": who.user_type,
                        "sender_id": who.user_id,
                        "key_id": sealed.key_id,
                        "nonce": sealed.nonce,
                        "ciphertext": sealed.ciphertext,
                    },
                ).fetchone()
                assert message is not None
                from_me = ev.customer if who.user_type == "customer" else ev.mitra
                other = [p for p in parties(row) if p != from_me(who.user_id)]
                outbox.add(other, "message.new", message_doc(message, content))
            done = conn.execute(
                sql.SQL(
                    "UPDATE chat_sessions SET {side} = %(goodbye)s, updated_at = now() WHERE id = %(session_id)s "
                    "RETURNING *"
                ).format(side=sql.Identifier(side)),
                {"goodbye": "message" if content is not None else "skipped", "session_id": session_id},
            ).fetchone()
            assert done is not None
            if done["customer_closing"] and done["mitra_closing"]:
                _complete(conn, outbox, session_id, ended_by=None)
        doc = session_doc(for_participant(conn, who, session_id))
    outbox.flush(db, valkey, events)
    return doc


def _complete(conn: Conn, outbox: Outbox, session_id: str, ended_by: str | None) -> None:
    row = conn.execute(
        "UPDATE chat_sessions SET status = 'completed', completed_at = now(), closing_expires_at = NULL, "
        "ended_by = COALESCE(%(ended_by)s, ended_by), updated_at = now() "
        "WHERE id = %(session_id)s AND status = 'closing' RETURNING *",
        {"session_id": session_id, "ended_by": ended_by},
    ).fetchone()
    if row is not None:
        outbox.capacity.add(str(row["mitra_id"]))
        outbox.add(parties(row), "session.completed", {"session_id": session_id, "ended_by": row["ended_by"]})


# --- deadlines (run by the worker) ---------------------------------------------------------------


def close_due(db: Database, valkey: redis.Redis, events: ChatEvents, limit: int = 500) -> list[dict[str, Any]]:
    """Sessions whose time is up (no extension running): closing, with the goodbye grace."""
    outbox = Outbox()
    with db.connection() as conn:
        rows = conn.execute(
            "WITH due AS (SELECT id FROM chat_sessions WHERE status = 'active' AND expires_at <= now() "
            "ORDER BY expires_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
            "UPDATE chat_sessions s SET status = 'closing', ended_at = now(), ended_by = 'system', "
            "closing_expires_at = now() + make_interval(secs => %(grace_seconds)s), updated_at = now() "
            "FROM due WHERE s.id = due.id RETURNING s.*, clock_timestamp() - s.expires_at AS lateness",
            {"limit": limit, "grace_seconds": CLOSING_GRACE_SECONDS},
        ).fetchall()
    for row in rows:
        outbox.add(parties(row), "session.closing", _closing_event(row))
    outbox.counted.append(lambda: observe_lateness("session_end", rows))
    outbox.flush(db, valkey, events)
    return rows


def complete_due(db: Database, valkey: redis.Redis, events: ChatEvents, limit: int = 500) -> list[dict[str, Any]]:
    """Closing sessions whose goodbye grace ran out: completed by the system."""
    outbox = Outbox()
    with db.connection() as conn:
        rows = conn.execute(
            "WITH due AS (SELECT id FROM chat_sessions WHERE status = 'closing' AND closing_expires_at <= now() "
            "ORDER BY closing_expires_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
            "UPDATE chat_sessions s SET status = 'completed', completed_at = now(), ended_by = 'system_auto_close', "
            "updated_at = now() FROM due WHERE s.id = due.id "
            "RETURNING s.*, clock_timestamp() - s.closing_expires_at AS lateness",
            {"limit": limit},
        ).fetchall()
    for row in rows:
        outbox.capacity.add(str(row["mitra_id"]))
        outbox.add(parties(row), "session.completed", {"session_id": row["id"], "ended_by": row["ended_by"]})
    outbox.counted.append(lambda: observe_lateness("closing_grace", rows))
    outbox.flush(db, valkey, events)
    return rows


# --- the topic flag --------------------------------------------------------------------------------


def set_topic(
    db: Database,
    config: AppConfig,
    events: ChatEvents,
    who: Principal,
    session_id: str,
    value: str,
    *,
    confirmed: bool,
) -> dict[str, Any]:
    """A mitra flags (or unflags) a session's topic as sensitive: the confirm step and the one-way
    latch as configured, an audit row per flip, and the customer's app told."""
    with db.connection() as conn:
        row = for_participant(conn, who, session_id, lock=True)
        if row["status"] not in LIVE:
            raise SessionNotActive()
        current = row["topic_sensitivity"]
        if value != current:
            if value == "sensitive" and config.bool("sensitive_flip_confirmation_enabled") and not confirmed:
                raise Conflict("Marking a topic sensitive needs confirmation", code="CONFIRMATION_REQUIRED")
            if current == "sensitive" and config.bool("sensitive_flag_one_way_latch"):
                raise Conflict("A sensitive topic cannot be set back to normal", code="TOPIC_LATCHED")
            conn.execute(
                "UPDATE chat_sessions SET topic_sensitivity = %(topic_sensitivity)s, updated_at = now() "
                "WHERE id = %(session_id)s",
                {"topic_sensitivity": value, "session_id": session_id},
            )
            conn.execute(
                "INSERT INTO session_topic_audit (session_id, changed_by_type, changed_by, old_value, new_value, "
                "confirmed) VALUES (%(session_id)s, %(changed_by_type)s, %(changed_by)s, %(old_value)s, "
                "%(new_value)s, %(confirmed)s)",
                {
                    "session_id": session_id,
                    "changed_by_type": who.user_type,
                    "changed_by": who.user_id,
                    "old_value": current,
                    "new_value": value,
                    "confirmed": confirmed,
                },
            )
        doc = session_doc(for_participant(conn, who, session_id))
    if value != current:
        events.publish(parties(row), "session.topic_updated", {"session_id": session_id, "topic_sensitivity": value})
    return doc


# --- the control center moves a session ------------------------------------------------------------


def reroute(
    db: Database,
    valkey: redis.Redis,
    config: AppConfig,
    events: ChatEvents,
    session_id: str,
    to_mitra_id: str,
    by: str,
) -> dict[str, Any]:
    """Move a live session to another available mitra; both mitras and the customer are told."""
    if to_mitra_id not in find_available_mitras(db, valkey, config):
        raise MitraUnavailable()
    outbox = Outbox()
    with db.connection() as conn:
        conn.execute("SELECT 1 FROM mitras WHERE id = %(mitra_id)s FOR UPDATE", {"mitra_id": to_mitra_id})
        row = conn.execute(
            "SELECT * FROM chat_sessions WHERE id = %(session_id)s FOR UPDATE", {"session_id": session_id}
        ).fetchone()
        if row is None:
            raise NotFound()
        if row["status"] not in LIVE:
            raise SessionNotActive()
        previous = str(row["mitra_id"])
        if previous != to_mitra_id:
            if live_sessions(conn, to_mitra_id) >= config.int("max_customers_per_mitra"):
                raise MitraUnavailable()
            conn.execute(
                "UPDATE chat_sessions SET mitra_id = %(mitra_id)s, updated_at = now() WHERE id = %(session_id)s",
                {"mitra_id": to_mitra_id, "session_id": session_id},
            )
            conn.execute(
                "INSERT INTO session_reroutes (session_id, from_mitra_id, to_mitra_id, rerouted_by) "
                "VALUES (%(session_id)s, %(from_mitra_id)s, %(to_mitra_id)s, %(rerouted_by)s)",
                {"session_id": session_id, "from_mitra_id": previous, "to_mitra_id": to_mitra_id, "rerouted_by": by},
            )
            outbox.capacity |= {previous, to_mitra_id}
        moved = conn.execute(BY_ID, {"session_id": session_id}).fetchone()
    assert moved is not None
    doc = session_doc(moved)
    if previous != to_mitra_id:
        # The previous mitra's sockets joined to the session close first (4403, it is no longer a
        # participant); its general sockets hear the session.rerouted below.
        outbox.add([ev.mitra(previous)], ev.DROP_SESSION, {"session_id": session_id})
        outbox.add(
            [ev.customer(moved["customer_id"])], "session.rerouted", {"session_id": session_id, "mitra": doc["mitra"]}
        )
        outbox.add([ev.mitra(to_mitra_id)], "session.rerouted", {"session_id": session_id, "session": doc})
        outbox.add([ev.mitra(previous)], "session.rerouted", {"session_id": session_id, "mitra": None})
    outbox.flush(db, valkey, events)
    return doc
