"""The control center's views of chats: sessions with filters, one session's record, the
dashboard's figures and each mitra's response to requests. Never message content: a transcript is
read only by `read_transcript`, one audited call with a reason (docs/privacy.md)."""

from __future__ import annotations

from typing import Any

import redis
from psycopg import sql

from lib.chat.messages import message_doc
from lib.chat.sessions import BY_ID, SELECT, session_doc
from lib.config.app import AppConfig
from lib.db import Database
from lib.errors import NotFound
from lib.pagination import NEWEST
from lib.presence.availability import find_available_mitras
from lib.transcripts import Transcripts


def admin_session_doc(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **session_doc(row),
        "customer_id": row["customer_id"],
        "payment_request_id": row["payment_request_id"],
        "request_type": row["request_type"],
        "targeted_mitra_id": row["targeted_mitra_id"],
        "failure_cause": row["failure_cause"],
        "created_at": row["created_at"],
        "completed_at": row["completed_at"],
    }


def listed_session_doc(row: dict[str, Any]) -> dict[str, Any]:
    """A session as the list shows it to those without `sessions.topic`: the topic's sensitivity
    stays in the session's record, so their page never tells who talked about what."""
    return {**admin_session_doc(row), "topic_sensitivity": None}


_SEARCH = sql.SQL(
    "{select} WHERE (%(status)s::text IS NULL OR s.status = %(status)s) "
    "AND (%(mitra_id)s::uuid IS NULL OR s.mitra_id = %(mitra_id)s) "
    "AND (%(customer_id)s::uuid IS NULL OR s.customer_id = %(customer_id)s) "
    "AND (%(created_from)s::timestamptz IS NULL OR s.created_at >= %(created_from)s) "
    "AND (%(created_to)s::timestamptz IS NULL OR s.created_at < %(created_to)s) "
    "AND (%(topic)s::text IS NULL OR s.topic_sensitivity = %(topic)s) "
    "AND {after} ORDER BY {order} LIMIT %(limit)s"
).format(select=SELECT, after=NEWEST.after("s"), order=NEWEST.order("s"))


def search_sessions(
    db: Database, filters: dict[str, Any], position: dict[str, Any], topic_reader: str | None = None
) -> list[dict[str, Any]]:
    """Newest first; every filter optional (`from`/`to` bound the creation time). With a
    `topic_reader` (a control-center user holding `sessions.topic`) the topic filter applies and
    the read is audited in `topic_reads` in the same transaction: no row, no read."""
    params = {
        "status": filters.get("status"),
        "mitra_id": filters.get("mitra_id"),
        "customer_id": filters.get("customer_id"),
        "created_from": filters.get("from"),
        "created_to": filters.get("to"),
        "topic": filters.get("topic_sensitivity") if topic_reader else None,
        **position,
    }
    with db.connection() as conn:
        rows = conn.execute(_SEARCH, params).fetchall()
        if topic_reader is not None:
            conn.execute(
                "INSERT INTO topic_reads (cc_user_id, filter, sessions) VALUES (%(cc_user_id)s, %(filter)s, %(session_ids)s)",
                {
                    "cc_user_id": topic_reader,
                    "filter": params["topic"],
                    "session_ids": [r["id"] for r in rows[: position["limit"] - 1]],
                },
            )
    return rows


def session_record(db: Database, session_id: str) -> dict[str, Any]:
    """One session with who was asked, its extensions, reroutes and topic flips."""
    row = db.fetch_one(BY_ID, {"session_id": session_id})
    if row is None:
        raise NotFound()
    params = {"session_id": session_id}
    return {
        **admin_session_doc(row),
        "notifications": db.fetch_all(
            "SELECT mitra_id, request_type, status, notified_at, responded_at FROM chat_request_notifications "
            "WHERE session_id = %(session_id)s ORDER BY notified_at, id",
            params,
        ),
        "extensions": db.fetch_all(
            "SELECT id, tier_id, duration_minutes, price, status, decided_by, requested_at, decided_at, "
            "payment_request_id, paid_at FROM session_extensions WHERE session_id = %(session_id)s ORDER BY requested_at",
            params,
        ),
        "reroutes": db.fetch_all(
            "SELECT from_mitra_id, to_mitra_id, rerouted_by, created_at FROM session_reroutes "
            "WHERE session_id = %(session_id)s ORDER BY created_at",
            params,
        ),
        "topic_changes": db.fetch_all(
            "SELECT changed_by_type, changed_by, old_value, new_value, confirmed, created_at FROM session_topic_audit "
            "WHERE session_id = %(session_id)s ORDER BY created_at",
            params,
        ),
        "transcript_reads": db.fetch_all(
            "SELECT cc_user_id, reason, messages, created_at FROM transcript_reads WHERE session_id = %(session_id)s "
            "ORDER BY created_at, id",
            params,
        ),
        "topic_reads": db.fetch_all(
            "SELECT cc_user_id, filter, created_at FROM topic_reads WHERE sessions @> ARRAY[%(session_id)s::uuid] "
            "ORDER BY created_at, id",
            params,
        ),
    }


def dashboard(db: Database, valkey: redis.Redis, config: AppConfig) -> dict[str, Any]:
    """Today's figures: 'today' is the calendar day in SERVER_TZ (the database session's zone)."""
    row = db.fetch_one(
        "SELECT (SELECT count(*) FROM mitra_online_status o JOIN mitras m ON m.id = o.mitra_id "
        "        WHERE o.is_online AND m.is_active) AS mitras_online, "
        "(SELECT count(*) FROM chat_sessions WHERE status = 'searching') AS searching_requests, "
        "(SELECT count(*) FROM chat_sessions WHERE status IN ('active', 'extending', 'closing')) AS active_sessions, "
        "(SELECT count(*) FROM chat_sessions WHERE status IN ('active', 'extending', 'closing') "
        "        AND topic_sensitivity = 'sensitive') AS sensitive_sessions, "
        "(SELECT count(*) FROM chat_sessions WHERE started_at >= date_trunc('day', now())) AS sessions_today, "
        "(SELECT COALESCE(sum(COALESCE(paid_amount, amount)), 0) FROM payment_requests "
        "        WHERE confirmed_at >= date_trunc('day', now())) AS revenue_today, "
        "(SELECT count(*) FROM pairing_failures WHERE review_status = 'open') AS open_failed_pairings"
    )
    assert row is not None
    return {**row, "mitras_available": len(find_available_mitras(db, valkey, config))}


_ACTIVITY = sql.SQL(
    "SELECT m.id, m.display_name, m.created_at, "
    "count(n.id) AS notified, count(n.id) FILTER (WHERE n.status = 'accepted') AS accepted, "
    "count(n.id) FILTER (WHERE n.status = 'declined') AS declined, "
    "count(n.id) FILTER (WHERE n.status = 'missed') AS missed, "
    "count(n.id) FILTER (WHERE n.status = 'ignored') AS ignored, "
    "avg(extract(epoch FROM n.responded_at - n.notified_at)) "
    "    FILTER (WHERE n.status IN ('accepted', 'declined')) AS avg_response_seconds, "
    "(SELECT count(*) FROM chat_sessions s WHERE s.mitra_id = m.id AND s.topic_sensitivity = 'sensitive' "
    "    AND (%(window_from)s::timestamptz IS NULL OR s.created_at >= %(window_from)s) "
    "    AND (%(window_to)s::timestamptz IS NULL OR s.created_at < %(window_to)s)) AS sensitive_sessions "
    "FROM mitras m LEFT JOIN chat_request_notifications n ON n.mitra_id = m.id "
    "    AND (%(window_from)s::timestamptz IS NULL OR n.notified_at >= %(window_from)s) "
    "    AND (%(window_to)s::timestamptz IS NULL OR n.notified_at < %(window_to)s) "
    "WHERE {after} GROUP BY m.id ORDER BY {order} LIMIT %(limit)s"
).format(after=NEWEST.after("m"), order=NEWEST.order("m"))


def mitra_activity(db: Database, window: dict[str, Any], position: dict[str, Any]) -> list[dict[str, Any]]:
    """Per mitra, newest mitra first: how it answered the requests it was sent in the window."""
    rows = db.fetch_all(_ACTIVITY, {"window_from": window.get("from"), "window_to": window.get("to"), **position})
    for r in rows:
        r["acceptance_rate"] = round(r["accepted"] / r["notified"], 4) if r["notified"] else None
        seconds = r["avg_response_seconds"]
        r["avg_response_seconds"] = round(float(seconds), 3) if seconds is not None else None
    return rows


def read_transcript(
    db: Database, transcripts: Transcripts, session_id: str, cc_user_id: str, reason: str
) -> dict[str, Any]:
    """The whole transcript, opened, with the read audited in the same transaction (no audit row,
    no read). A session's messages are bounded by its minutes, so one document rather than pages."""
    with db.connection() as conn:
        session = conn.execute(
            "SELECT id, transcript_purged_at FROM chat_sessions WHERE id = %(session_id)s", {"session_id": session_id}
        ).fetchone()
        if session is None:
            raise NotFound()
        rows = conn.execute(
            "SELECT * FROM chat_messages WHERE session_id = %(session_id)s ORDER BY seq", {"session_id": session_id}
        ).fetchall()
        messages = [message_doc(r, transcripts.open_row(r)) for r in rows]
        conn.execute(
            "INSERT INTO transcript_reads (session_id, cc_user_id, reason, messages) "
            "VALUES (%(session_id)s, %(cc_user_id)s, %(reason)s, %(message_count)s)",
            {"session_id": session_id, "cc_user_id": cc_user_id, "reason": reason, "message_count": len(messages)},
        )
    return {"session_id": session["id"], "transcript_purged_at": session["transcript_purged_at"], "messages": messages}
