"""Pairing (DOMAIN.md, "Pairing"): a confirmed payment opens a search, a blast to every available
mitra or a targeted request to one; the first accept wins by one conditional UPDATE; a search that
nobody takes in time fails, and paid money that bought no chat becomes a `pairing_failures` row
and a refund due (lib/payments/refunds.py). After a targeted failure the customer may fall back to
a blast with the same payment, for RETURNING_CHOICE_SECONDS.

Causes (`failure_cause`, `pairing_failures.cause`, `pairing.expired`): NO_MITRA_AVAILABLE (nobody to
ask), PAIRING_TIMEOUT (a blast nobody took), RETURNING_CHAT_TIMEOUT (the targeted mitra did not take
it: `reason` timeout, declined or unavailable), CANCELLED (the customer), ALREADY_ACTIVE (paid while
another session was open).
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from psycopg import sql

from lib.chat import events as ev
from lib.chat.events import ChatEvents
from lib.chat.outbox import Outbox, fire_due
from lib.chat.sessions import BY_ID, call_name, session_doc
from lib.chat.states import OPEN
from lib.config.app import AppConfig
from lib.db import Conn, Database
from lib.errors import Conflict, Forbidden, Gone, NotFound
from lib.metrics import m
from lib.pagination import Keyset
from lib.payments.refunds import record_failure
from lib.presence.availability import find_available_mitras
from lib.presence.state import live_sessions

log = logging.getLogger(__name__)

RETURNING_CHOICE_SECONDS = 600

NO_MITRA_AVAILABLE = "NO_MITRA_AVAILABLE"
PAIRING_TIMEOUT = "PAIRING_TIMEOUT"
RETURNING_CHAT_TIMEOUT = "RETURNING_CHAT_TIMEOUT"
CANCELLED = "CANCELLED"
ALREADY_ACTIVE = "ALREADY_ACTIVE"


class RequestTaken(Conflict):
    code, message = "REQUEST_TAKEN", "Another Bestie has taken this request"


class RequestExpired(Gone):
    code, message = "REQUEST_EXPIRED", "This request is no longer open"


class CapacityFull(Conflict):
    code, message = "CAPACITY_FULL", "You are already in as many chats as you can take"


def request_doc(row: dict[str, Any]) -> dict[str, Any]:
    """A request as a notified mitra sees it (API.md, chat-requests/pending)."""
    return {
        "session_id": row["session_id"],
        "request_type": row["request_type"],
        "customer_call_name": call_name(row["customer_name"]),
        "mode": row["mode"],
        "duration_minutes": row["duration_minutes"],
        "topic_sensitivity": row["topic_sensitivity"],
        "notified_at": row["notified_at"],
        "expires_at": row["search_expires_at"],
    }


def pairing_doc(row: dict[str, Any], targeted_name: str | None = None) -> dict[str, Any]:
    """A search as its customer sees it: open, or failed with the fallback still possible."""
    return {
        "session_id": row["id"],
        "payment_request_id": row["payment_request_id"],
        "status": row["status"],
        "request_type": row["request_type"],
        "targeted_mitra": {"id": row["targeted_mitra_id"], "display_name": targeted_name}
        if row["targeted_mitra_id"]
        else None,
        "expires_at": row["search_expires_at"],
        "cause": row["failure_cause"],
        "reason": row["failure_reason"],
        "can_fallback": row["choice_expires_at"] is not None,
        "fallback_until": row["choice_expires_at"],
    }


# --- starting a search -------------------------------------------------------------------------


def start_pairing(
    db: Database, valkey: redis.Redis, config: AppConfig, events: ChatEvents, payment_request_id: str
) -> str | None:
    """Open the search a confirmed session payment paid for. Idempotent: a payment that already has
    a session (or is no longer confirmed) is left alone. Returns the new session id."""
    candidates = find_available_mitras(db, valkey, config)
    outbox = Outbox()
    with db.connection() as conn:
        pay = conn.execute(
            "SELECT * FROM payment_requests WHERE id = %(payment_request_id)s FOR UPDATE",
            {"payment_request_id": payment_request_id},
        ).fetchone()
        if pay is None or pay["kind"] != "session" or pay["status"] != "confirmed" or pay["session_id"] is not None:
            return None
        request_type = "targeted" if pay["targeted_mitra_id"] else "blast"
        session_id = _open_search(conn, config, outbox, pay, request_type, candidates)
    outbox.flush(db, valkey, events)
    return session_id


def _open_search(
    conn: Conn,
    config: AppConfig,
    outbox: Outbox,
    pay: dict[str, Any],
    request_type: str,
    candidates: list[str],
) -> str:
    customer_id = str(pay["customer_id"])
    conn.execute("SELECT 1 FROM customers WHERE id = %(customer_id)s FOR UPDATE", {"customer_id": customer_id})
    other = conn.execute(
        "SELECT id FROM chat_sessions WHERE customer_id = %(customer_id)s AND status = ANY(%(open)s) LIMIT 1",
        {"customer_id": customer_id, "open": list(OPEN)},
    ).fetchone()
    targeted = str(pay["targeted_mitra_id"]) if request_type == "targeted" else None
    asked = ([targeted] if targeted in candidates else []) if targeted else candidates
    window = config.int("returning_chat_confirmation_timeout_seconds" if targeted else "pairing_blast_timeout_seconds")
    row = conn.execute(
        "INSERT INTO chat_sessions (customer_id, mode, status, payment_request_id, request_type, targeted_mitra_id, "
        "duration_minutes, topic_sensitivity, search_expires_at) VALUES (%(customer_id)s, %(mode)s, 'searching', %(payment_request_id)s, "
        "%(type)s, %(target)s, %(minutes)s, %(topic)s, now() + make_interval(secs => %(window)s)) RETURNING id",
        {
            "customer_id": customer_id,
            "mode": pay["mode"],
            "payment_request_id": pay["id"],
            "type": request_type,
            "target": targeted,
            "minutes": pay["minutes"],
            "topic": pay["topic_sensitivity"] or "normal",
            "window": window,
        },
    ).fetchone()
    assert row is not None
    session_id = str(row["id"])
    conn.execute(
        "UPDATE payment_requests SET session_id = %(session_id)s, updated_at = now() WHERE id = %(payment_request_id)s",
        {"session_id": session_id, "payment_request_id": pay["id"]},
    )
    if other is not None:  # paid again while a session was open: nothing to pair, refund by hand
        _end_search(conn, outbox, session_id, ALREADY_ACTIVE, None)
        return session_id
    if not asked:
        if targeted:
            _end_search(conn, outbox, session_id, RETURNING_CHAT_TIMEOUT, "unavailable")
        else:
            _end_search(conn, outbox, session_id, NO_MITRA_AVAILABLE, None)
        return session_id
    conn.execute(
        "INSERT INTO chat_request_notifications (session_id, mitra_id, request_type) "
        "SELECT %(session_id)s, unnest(%(mitra_ids)s::uuid[]), %(request_type)s",
        {"session_id": session_id, "mitra_ids": asked, "request_type": request_type},
    )
    for note in _requests(conn, session_id):
        outbox.add([ev.mitra(note["mitra_id"])], "pairing.request", request_doc(note))
    return session_id


def _requests(conn: Conn, session_id: str, mitra_id: str | None = None) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT n.mitra_id, n.session_id, n.notified_at, s.request_type, s.mode, s.duration_minutes, "
        "s.topic_sensitivity, s.search_expires_at, c.display_name AS customer_name "
        "FROM chat_request_notifications n JOIN chat_sessions s ON s.id = n.session_id "
        "JOIN customers c ON c.id = s.customer_id "
        "WHERE n.session_id = %(session_id)s AND (%(mitra_id)s::uuid IS NULL OR n.mitra_id = %(mitra_id)s)",
        {"session_id": session_id, "mitra_id": mitra_id},
    ).fetchall()


def _end_search(conn: Conn, outbox: Outbox, session_id: str, cause: str, reason: str | None) -> None:
    """A search that found nobody: the session ends `expired` (or `cancelled`), the mitras still
    asked hear it is over, and the payment fails unless a targeted customer may still fall back."""
    fallback = cause == RETURNING_CHAT_TIMEOUT
    row = conn.execute(
        "UPDATE chat_sessions SET status = %(status)s, failure_cause = %(cause)s, failure_reason = %(reason)s, "
        "search_expires_at = NULL, ended_at = now(), updated_at = now(), "
        "choice_expires_at = CASE WHEN %(fallback)s THEN now() + make_interval(secs => %(choice)s) END "
        "WHERE id = %(session_id)s AND status = 'searching' RETURNING *",
        {
            "status": "cancelled" if cause == CANCELLED else "expired",
            "cause": cause,
            "reason": reason,
            "fallback": fallback,
            "choice": RETURNING_CHOICE_SECONDS,
            "session_id": session_id,
        },
    ).fetchone()
    if row is None:
        return
    outbox.counted.append(lambda: m().pairing.labels(row["request_type"], cause).inc())
    asked = conn.execute(
        "UPDATE chat_request_notifications SET status = 'ignored', responded_at = now() "
        "WHERE session_id = %(session_id)s AND status = 'notified' RETURNING mitra_id",
        {"session_id": session_id},
    ).fetchall()
    if asked:
        kind = "pairing.cancelled" if cause == CANCELLED else "pairing.expired"
        outbox.add([ev.mitra(a["mitra_id"]) for a in asked], kind, {"session_id": session_id})
    if not fallback:
        fail_payment(conn, str(row["payment_request_id"]), session_id, cause)
    outbox.add(
        [ev.customer(row["customer_id"])],
        "pairing.expired" if cause != CANCELLED else "pairing.cancelled",
        {
            "session_id": session_id,
            "cause": cause,
            "reason": reason,
            "can_fallback": fallback,
            "fallback_until": row["choice_expires_at"],
        },
    )


def fail_payment(conn: Conn, payment_request_id: str, session_id: str | None, cause: str) -> None:
    """Paid, and no chat came of it: `failed_pairing`, with a pairing failure for the control
    center's review and a refund due for the money (lib/payments/refunds.py), in this transaction."""
    failed = conn.execute(
        "UPDATE payment_requests SET status = 'failed_pairing', failure_cause = %(cause)s, updated_at = now() "
        "WHERE id = %(payment_request_id)s AND status = 'confirmed' RETURNING *",
        {"payment_request_id": payment_request_id, "cause": cause},
    ).fetchone()
    if failed is not None:
        record_failure(conn, failed, cause, session_id)
        log.info("payment %s failed pairing: %s", payment_request_id, cause)


# --- the mitra's side --------------------------------------------------------------------------


def accept(
    db: Database, valkey: redis.Redis, config: AppConfig, events: ChatEvents, mitra_id: str, session_id: str
) -> dict[str, Any]:
    """First accept wins; the winner's repeat is answered with the same session."""
    outbox = Outbox()
    with db.connection() as conn:
        # Accepts of one mitra queue here, so its capacity check and the win cannot interleave.
        me = conn.execute(
            "SELECT is_active FROM mitras WHERE id = %(mitra_id)s FOR UPDATE", {"mitra_id": mitra_id}
        ).fetchone()
        if me is None or not me["is_active"]:
            raise Forbidden("This Bestie account is inactive", code="ACCOUNT_INACTIVE")
        note = conn.execute(
            "SELECT status FROM chat_request_notifications WHERE session_id = %(session_id)s AND mitra_id = %(mitra_id)s",
            {"session_id": session_id, "mitra_id": mitra_id},
        ).fetchone()
        if note is None:
            raise NotFound()  # never asked: as if the request did not exist
        current = conn.execute(
            "SELECT status, mitra_id FROM chat_sessions WHERE id = %(session_id)s", {"session_id": session_id}
        ).fetchone()
        assert current is not None
        if current["status"] == "searching":
            if live_sessions(conn, mitra_id) >= config.int("max_customers_per_mitra"):
                raise CapacityFull()
            won = conn.execute(
                "UPDATE chat_sessions SET status = 'active', mitra_id = %(mitra_id)s, started_at = now(), "
                "expires_at = now() + make_interval(mins => duration_minutes), search_expires_at = NULL, "
                "updated_at = now() WHERE id = %(session_id)s AND status = 'searching' RETURNING *",
                {"session_id": session_id, "mitra_id": mitra_id},
            ).fetchone()
            if won is not None:
                _won(conn, outbox, won, mitra_id)
                outbox.counted.append(lambda: _count_paired(won))
        row = conn.execute(BY_ID, {"session_id": session_id}).fetchone()
    assert row is not None
    if str(row["mitra_id"] or "") != mitra_id:
        raise RequestTaken() if row["mitra_id"] else RequestExpired()
    outbox.flush(db, valkey, events)
    return session_doc(row)


def _count_paired(session: dict[str, Any]) -> None:
    metrics = m()
    metrics.pairing.labels(session["request_type"], "paired").inc()
    waited = (session["started_at"] - session["created_at"]).total_seconds()
    metrics.time_to_accept.labels(session["request_type"]).observe(max(waited, 0.0))


def _won(conn: Conn, outbox: Outbox, session: dict[str, Any], mitra_id: str) -> None:
    session_id = str(session["id"])
    conn.execute(
        "UPDATE chat_request_notifications SET status = 'accepted', responded_at = now() "
        "WHERE session_id = %(session_id)s AND mitra_id = %(mitra_id)s",
        {"session_id": session_id, "mitra_id": mitra_id},
    )
    missed = conn.execute(
        "UPDATE chat_request_notifications SET status = 'missed', responded_at = now() "
        "WHERE session_id = %(session_id)s AND status = 'notified' RETURNING mitra_id",
        {"session_id": session_id},
    ).fetchall()
    conn.execute(
        "UPDATE payment_requests SET status = 'consumed', updated_at = now() WHERE id = %(payment_request_id)s AND status = 'confirmed'",
        {"payment_request_id": session["payment_request_id"]},
    )
    conn.execute(
        "UPDATE customers SET first_active_session_at = COALESCE(first_active_session_at, now()) WHERE id = %(customer_id)s",
        {"customer_id": session["customer_id"]},
    )
    full = conn.execute(BY_ID, {"session_id": session_id}).fetchone()
    assert full is not None
    outbox.capacity.add(mitra_id)
    outbox.add(
        [ev.customer(session["customer_id"])],
        "session.paired",
        {"session_id": session_id, "mitra_name": full["mitra_name"], "session": session_doc(full)},
    )
    if missed:
        outbox.add([ev.mitra(m["mitra_id"]) for m in missed], "pairing.taken", {"session_id": session_id})


def decline(db: Database, valkey: redis.Redis, events: ChatEvents, mitra_id: str, session_id: str) -> None:
    """A blast stays open for the others; a targeted request ends (its only mitra said no)."""
    outbox = Outbox()
    with db.connection() as conn:
        declined = conn.execute(
            "UPDATE chat_request_notifications SET status = 'declined', responded_at = now() "
            "WHERE session_id = %(session_id)s AND mitra_id = %(mitra_id)s AND status = 'notified' RETURNING request_type",
            {"session_id": session_id, "mitra_id": mitra_id},
        ).fetchone()
        if declined is None:
            asked = conn.execute(
                "SELECT 1 FROM chat_request_notifications WHERE session_id = %(session_id)s AND mitra_id = %(mitra_id)s",
                {"session_id": session_id, "mitra_id": mitra_id},
            ).fetchone()
            if asked is None:
                raise NotFound()
            return  # already answered, taken or over: nothing left to decline
        if declined["request_type"] == "targeted":
            _end_search(conn, outbox, session_id, RETURNING_CHAT_TIMEOUT, "declined")
    outbox.flush(db, valkey, events)


def request_status(db: Database, mitra_id: str, session_id: str) -> dict[str, Any]:
    """`{status, response}`: open | accepted (by me) | taken | cancelled | expired, and my answer."""
    row = db.fetch_one(
        "SELECT n.status AS response, s.status, s.mitra_id FROM chat_request_notifications n "
        "JOIN chat_sessions s ON s.id = n.session_id WHERE n.session_id = %(session_id)s AND n.mitra_id = %(mitra_id)s",
        {"session_id": session_id, "mitra_id": mitra_id},
    )
    if row is None:
        raise NotFound()
    if row["status"] == "searching":
        status = "open"
    elif row["mitra_id"] is not None:
        status = "accepted" if str(row["mitra_id"]) == mitra_id else "taken"
    else:
        status = row["status"]
    return {"session_id": session_id, "status": status, "response": row["response"]}


# A request as its mitra lists it; open = asked, unanswered, and the search still on. The session's
# topic may be flagged later by the mitra who holds it: any other mitra (one who lost the blast, or
# was rerouted away) sees the topic the request was made with, the payment's.
_REQUEST_COLUMNS = sql.SQL(
    "n.id, n.mitra_id, n.session_id, n.notified_at, n.status AS response, s.request_type, s.mode, "
    "s.duration_minutes, CASE WHEN s.mitra_id = n.mitra_id THEN s.topic_sensitivity "
    "ELSE COALESCE(p.topic_sensitivity, 'normal') END AS topic_sensitivity, s.search_expires_at, "
    "c.display_name AS customer_name"
)
_REQUESTS_OF = sql.SQL(
    "FROM chat_request_notifications n JOIN chat_sessions s ON s.id = n.session_id "
    "JOIN customers c ON c.id = s.customer_id LEFT JOIN payment_requests p ON p.id = s.payment_request_id "
    "WHERE n.mitra_id = %(mitra_id)s"
)
_OPEN_REQUEST = sql.SQL("(n.status = 'notified' AND s.status = 'searching')")
REQUEST_ORDER = Keyset(("notified_at", "time"), ("id", "int"))
_REQUESTS = (
    sql.SQL("SELECT {cols} {frm} AND (NOT %(open)s OR {open}) AND {after} ORDER BY {order} LIMIT %(limit)s")
    .format(
        cols=_REQUEST_COLUMNS,
        frm=_REQUESTS_OF,
        open=_OPEN_REQUEST,
        after=REQUEST_ORDER.after("n"),
        order=REQUEST_ORDER.order("n"),
    )
    .as_bytes(None)
)


def mitra_requests(db: Database, mitra_id: str, *, open_only: bool, position: dict[str, Any]) -> list[dict[str, Any]]:
    """Requests this mitra was asked to take, newest first: the open ones, or all; `position` is
    REQUEST_ORDER.params(query)."""
    return db.fetch_all(_REQUESTS, {"mitra_id": mitra_id, "open": open_only, **position})


# The recent list as the original ordered it (issue 26): requests still open to the mitra first, then
# the rest, each newest first. `open_first` (1, then 0) leads the keyset, so a cursor knows which part
# it stopped in. Each part is its own walk of the mitra's notifications index, cut at one page: the
# open part is a handful of rows, and the rest is never sorted whole. A request answered or taken
# between two pages moves to the second part and may be listed again there (its session_id is the
# same); nothing is skipped, since a request never moves back to the open part. The parts' own
# predicates are written here, by hand: each compares within its part (the open one only while the
# cursor is still in it), which a single keyset over the three columns cannot say.
RECENT_ORDER = Keyset(("open_first", "int"), ("notified_at", "time"), ("id", "int"))
_RECENT = (
    sql.SQL(
        "(SELECT {cols}, 1 AS open_first {frm} AND {open} "
        "AND (%(after_open_first)s::int IS NULL OR (%(after_open_first)s::int = 1 "
        "AND (n.notified_at, n.id) < (%(after_notified_at)s, %(after_id)s))) "
        "ORDER BY {part_order} LIMIT %(limit)s) "
        "UNION ALL "
        "(SELECT {cols}, 0 AS open_first {frm} AND NOT {open} "
        "AND (%(after_open_first)s::int IS DISTINCT FROM 0 "
        "OR (n.notified_at, n.id) < (%(after_notified_at)s, %(after_id)s)) "
        "ORDER BY {part_order} LIMIT %(limit)s) "
        "ORDER BY {order} LIMIT %(limit)s"
    )
    .format(
        cols=_REQUEST_COLUMNS,
        frm=_REQUESTS_OF,
        open=_OPEN_REQUEST,
        part_order=REQUEST_ORDER.order("n"),
        order=RECENT_ORDER.order(),
    )
    .as_bytes(None)
)


def mitra_recent_requests(db: Database, mitra_id: str, position: dict[str, Any]) -> list[dict[str, Any]]:
    """Every request this mitra was asked to take, the open ones first; `position` is
    RECENT_ORDER.params(query)."""
    return db.fetch_all(_RECENT, {"mitra_id": mitra_id, **position})


# --- the customer's side -----------------------------------------------------------------------


def cancel(db: Database, valkey: redis.Redis, events: ChatEvents, customer_id: str) -> dict[str, Any]:
    """Stop the current search, or give up the fallback after a targeted failure."""
    outbox = Outbox()
    with db.connection() as conn:
        searching = conn.execute(
            "SELECT id FROM chat_sessions WHERE customer_id = %(customer_id)s AND status = 'searching' FOR UPDATE",
            {"customer_id": customer_id},
        ).fetchone()
        if searching is not None:
            session_id = str(searching["id"])
            _end_search(conn, outbox, session_id, CANCELLED, None)
        else:
            waiting = _fallback_candidate(conn, customer_id)
            if waiting is None:
                raise Conflict("There is no search to cancel", code="NO_ACTIVE_REQUEST")
            session_id = str(waiting["id"])
            conn.execute(
                "UPDATE chat_sessions SET choice_expires_at = NULL, updated_at = now() WHERE id = %(session_id)s",
                {"session_id": session_id},
            )
            fail_payment(conn, str(waiting["payment_request_id"]), session_id, RETURNING_CHAT_TIMEOUT)
    outbox.flush(db, valkey, events)
    return {"session_id": session_id, "status": "cancelled"}


def _fallback_candidate(conn: Conn, customer_id: str) -> dict[str, Any] | None:
    return conn.execute(
        "SELECT s.* FROM chat_sessions s JOIN payment_requests p ON p.id = s.payment_request_id "
        "WHERE s.customer_id = %(customer_id)s AND s.choice_expires_at > now() AND p.status = 'confirmed' "
        "AND p.session_id = s.id ORDER BY s.created_at DESC LIMIT 1 FOR UPDATE OF s, p",
        {"customer_id": customer_id},
    ).fetchone()


def fallback_to_blast(
    db: Database, valkey: redis.Redis, config: AppConfig, events: ChatEvents, customer_id: str
) -> dict[str, Any]:
    """After a targeted failure: the same payment, asked of every available mitra."""
    candidates = find_available_mitras(db, valkey, config)
    outbox = Outbox()
    with db.connection() as conn:
        waiting = _fallback_candidate(conn, customer_id)
        if waiting is None:
            raise RequestExpired("There is no targeted request to fall back from")
        conn.execute(
            "UPDATE chat_sessions SET choice_expires_at = NULL, updated_at = now() WHERE id = %(session_id)s",
            {"session_id": waiting["id"]},
        )
        pay = conn.execute(
            "SELECT * FROM payment_requests WHERE id = %(payment_request_id)s",
            {"payment_request_id": waiting["payment_request_id"]},
        ).fetchone()
        assert pay is not None
        session_id = _open_search(conn, config, outbox, pay, "blast", candidates)
        row = conn.execute(
            "SELECT * FROM chat_sessions WHERE id = %(session_id)s", {"session_id": session_id}
        ).fetchone()
    outbox.flush(db, valkey, events)
    assert row is not None
    return pairing_doc(row)


# --- deadlines (run by the worker) ---------------------------------------------------------------


def expire_searches(db: Database, valkey: redis.Redis, events: ChatEvents, limit: int = 100) -> int:
    """Searches past their window: a blast fails (PAIRING_TIMEOUT), a targeted request fails with
    RETURNING_CHAT_TIMEOUT and opens the customer's fallback window."""

    def fire(conn: Conn, outbox: Outbox, row: dict[str, Any]) -> None:
        if row["request_type"] == "targeted":
            _end_search(conn, outbox, str(row["id"]), RETURNING_CHAT_TIMEOUT, "timeout")
        else:
            _end_search(conn, outbox, str(row["id"]), PAIRING_TIMEOUT, None)

    claim = (
        "SELECT id, request_type, clock_timestamp() - search_expires_at AS lateness FROM chat_sessions "
        "WHERE status = 'searching' AND search_expires_at <= now() "
        "ORDER BY search_expires_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
    )
    return len(fire_due(db, valkey, events, "search_window", claim, fire, limit))


def expire_fallback_choices(db: Database, valkey: redis.Redis, events: ChatEvents, limit: int = 100) -> int:
    """A targeted failure the customer did not fall back from in time: the payment fails."""

    def fire(conn: Conn, outbox: Outbox, row: dict[str, Any]) -> None:
        conn.execute(
            "UPDATE chat_sessions SET choice_expires_at = NULL, updated_at = now() WHERE id = %(session_id)s",
            {"session_id": row["id"]},
        )
        fail_payment(conn, str(row["payment_request_id"]), str(row["id"]), RETURNING_CHAT_TIMEOUT)

    claim = (
        "SELECT id, payment_request_id, clock_timestamp() - choice_expires_at AS lateness FROM chat_sessions "
        "WHERE choice_expires_at <= now() ORDER BY choice_expires_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
    )
    return len(fire_due(db, valkey, events, "fallback_choice", claim, fire, limit))
