"""A mitra's presence: online or offline (every change logged), heartbeats, the live sessions
that use its capacity, and the sweep that sets silent mitras offline."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import psycopg
import redis
from psycopg import sql

from lib import sockets
from lib.chat.states import LIVE, in_states
from lib.config.app import AppConfig
from lib.db import Conn, Database
from lib.errors import ApiError, Forbidden, NotFound
from lib.presence.keys import ONLINE, SNAPSHOT, capacity_key, heartbeat_key
from lib.presence.mirror import flush_heartbeats
from lib.valkey import VALKEY_ERRORS, valkey_failed

log = logging.getLogger(__name__)

_LIVE_COUNT = sql.SQL("SELECT count(*) AS n FROM chat_sessions WHERE mitra_id = %(mitra_id)s AND {live}").format(
    live=in_states("status", LIVE)
)


def live_sessions(conn: Conn, mitra_id: str) -> int:
    row = conn.execute(_LIVE_COUNT, {"mitra_id": mitra_id}).fetchone()
    return int(row["n"]) if row else 0


def recompute_capacity(db: Database, valkey: redis.Redis, mitra_id: str) -> int:
    """Count live sessions in PostgreSQL and mirror the number; call after every session transition."""
    with db.connection() as conn:
        count = live_sessions(conn, mitra_id)
    try:
        pipe = valkey.pipeline(transaction=False)
        pipe.set(capacity_key(mitra_id), count)
        pipe.delete(SNAPSHOT)
        pipe.execute()
    except VALKEY_ERRORS:
        valkey_failed("presence")
    return count


def status_doc(db: Database, config: AppConfig, cadence_seconds: int, mitra_id: str) -> dict[str, Any]:
    capacity = config.int("max_customers_per_mitra")
    with db.connection() as conn:
        row = conn.execute(
            "SELECT is_online FROM mitra_online_status WHERE mitra_id = %(mitra_id)s", {"mitra_id": mitra_id}
        ).fetchone()
        live = live_sessions(conn, mitra_id)
    return {
        "is_online": bool(row and row["is_online"]),
        "active_session_count": live,
        "capacity": capacity,
        "available_slots": max(0, capacity - live),
        "heartbeat_cadence_seconds": cadence_seconds,
        "stale_after_seconds": config.int("mitra_stale_after_seconds"),
    }


def set_online(db: Database, valkey: redis.Redis, mitra_id: str, online: bool, reason: str = "manual") -> bool:
    """PostgreSQL first (state + log row when it changes), then the Valkey mirror. Returns changed."""
    with db.connection() as conn:
        if online:
            active = conn.execute(
                "SELECT is_active FROM mitras WHERE id = %(mitra_id)s", {"mitra_id": mitra_id}
            ).fetchone()
            if active is None:
                raise NotFound()
            if not active["is_active"]:
                raise Forbidden("This Bestie account is inactive", code="ACCOUNT_INACTIVE")
        previous = conn.execute(
            "SELECT is_online FROM mitra_online_status WHERE mitra_id = %(mitra_id)s FOR UPDATE", {"mitra_id": mitra_id}
        ).fetchone()
        changed = previous is None or previous["is_online"] != online
        # Going online counts as a heartbeat: a fresh online mitra is not stale.
        conn.execute(
            "INSERT INTO mitra_online_status (mitra_id, is_online, last_heartbeat_at, changed_at) "
            "VALUES (%(mitra_id)s, %(is_online)s, CASE WHEN %(is_online)s THEN now() END, now()) "
            "ON CONFLICT (mitra_id) DO UPDATE SET is_online = EXCLUDED.is_online, "
            "last_heartbeat_at = CASE WHEN %(is_online)s THEN now() ELSE mitra_online_status.last_heartbeat_at END, "
            "changed_at = CASE WHEN mitra_online_status.is_online <> EXCLUDED.is_online THEN now() "
            "ELSE mitra_online_status.changed_at END",
            {"mitra_id": mitra_id, "is_online": online},
        )
        if changed:
            conn.execute(
                "INSERT INTO mitra_online_logs (mitra_id, is_online, reason) VALUES (%(mitra_id)s, %(is_online)s, %(reason)s)",
                {"mitra_id": mitra_id, "is_online": online, "reason": reason},
            )
        live = live_sessions(conn, mitra_id)
    try:
        pipe = valkey.pipeline(transaction=False)
        if online:
            pipe.sadd(ONLINE, mitra_id)
            pipe.set(heartbeat_key(mitra_id), time.time())
        else:
            pipe.srem(ONLINE, mitra_id)
        pipe.set(capacity_key(mitra_id), live)
        pipe.delete(SNAPSHOT)
        pipe.execute()
    except VALKEY_ERRORS:
        valkey_failed("presence")
        log.warning("presence mirror not updated for %s (Valkey down); the worker heals it", mitra_id)
    return changed


def sweep_stale(db: Database, valkey: redis.Redis, config: AppConfig) -> list[str]:
    """Set online mitras whose last heartbeat is older than mitra_stale_after_seconds offline."""
    if not config.bool("require_ping"):
        return []
    flush_heartbeats(db, valkey)
    with db.connection() as conn:
        rows = conn.execute(
            "UPDATE mitra_online_status SET is_online = false, changed_at = now() "
            "WHERE is_online AND COALESCE(last_heartbeat_at, changed_at) < now() - make_interval(secs => %(stale_after_seconds)s) "
            "RETURNING mitra_id",
            {"stale_after_seconds": config.int("mitra_stale_after_seconds")},
        ).fetchall()
        ids = [str(r["mitra_id"]) for r in rows]
        if ids:
            conn.execute(
                "INSERT INTO mitra_online_logs (mitra_id, is_online, reason) "
                "SELECT unnest(%(mitra_ids)s::uuid[]), false, 'stale_sweep'",
                {"mitra_ids": ids},
            )
    if ids:
        log.info("stale sweep set %d mitra(s) offline", len(ids))
        try:
            pipe = valkey.pipeline(transaction=False)
            pipe.srem(ONLINE, *ids)
            pipe.delete(SNAPSHOT)
            pipe.execute()
        except VALKEY_ERRORS:
            valkey_failed("presence")
    return ids


def offline_when_gone(db: Database, valkey: redis.Redis, gone: Sequence[tuple[str, float]]) -> set[str]:
    """Mitras whose last socket closed at the time given (runtime/gateway/presence.py, a grace ago)
    go offline, unless a socket of theirs is live on any gateway, the app has sent a heartbeat since
    (it is alive, reconnecting), or the mitra changed its status since (an explicit choice wins).
    Many at once, as a network blip closes them together: one Valkey round trip, one conditional
    UPDATE (a toggle racing it is never undone), one INSERT of their log rows; a deadlock with
    another writer of those rows is tried again, twice. Returns the mitras set offline. Valkey
    away raises: the stale sweep decides instead."""
    closed: dict[str, float] = {}
    for mitra_id, at in gone:  # the latest close of a mitra named twice
        closed[mitra_id] = max(at, closed.get(mitra_id, at))
    seen = _seen(valkey, list(closed))
    due = sorted(
        (mitra_id, at)
        for mitra_id, at in closed.items()
        if not seen[mitra_id][0] and not ((beat := seen[mitra_id][1]) is not None and beat > at)
    )
    if not due:
        return set()
    for attempt in range(3):
        try:
            off = _set_offline(db, due)
            break
        except ApiError as exc:  # a deadlock with another writer of these rows: only this try lost
            if attempt == 2 or not isinstance(exc.__cause__, psycopg.errors.TransactionRollback):
                raise
    if not off:
        return set()
    log.info("%d mitra(s) went offline: their last socket closed", len(off))
    try:
        pipe = valkey.pipeline(transaction=False)
        pipe.srem(ONLINE, *off)
        pipe.delete(SNAPSHOT)
        pipe.execute()
    except VALKEY_ERRORS:
        valkey_failed("presence")  # the mirror is healed by the worker
    return set(off)


def _set_offline(db: Database, due: list[tuple[str, float]]) -> list[str]:
    """One transaction: the rows locked in id order (so two batches, from two gateways, never
    deadlock each other), each updated on its own conditions, a log row for each one changed."""
    with db.connection() as conn:
        ids = [mitra_id for mitra_id, _ in due]
        conn.execute(
            "SELECT 1 FROM mitra_online_status WHERE mitra_id = ANY(%(ids)s::uuid[]) ORDER BY mitra_id FOR UPDATE",
            {"ids": ids},
        )
        rows = conn.execute(
            "UPDATE mitra_online_status s SET is_online = false, changed_at = now() "
            "FROM unnest(%(ids)s::uuid[], %(closed)s::float8[]) AS d(mitra_id, closed) "
            "WHERE s.mitra_id = d.mitra_id AND s.is_online AND s.changed_at <= to_timestamp(d.closed) "
            "AND COALESCE(s.last_heartbeat_at, s.changed_at) <= to_timestamp(d.closed) RETURNING s.mitra_id",
            {"ids": ids, "closed": [at for _, at in due]},
        ).fetchall()
        off = sorted(str(r["mitra_id"]) for r in rows)
        if off:
            conn.execute(
                "INSERT INTO mitra_online_logs (mitra_id, is_online, reason) "
                "SELECT unnest(%(ids)s::uuid[]), false, 'socket_closed'",
                {"ids": off},
            )
    return off


Seen = tuple[bool, float | None]  # what Valkey knows of a mitra: a live socket anywhere, the last heartbeat


def seen_in_valkey(valkey: redis.Redis, mitra_ids: list[str]) -> dict[str, Seen]:
    """For each mitra, whether a socket of theirs is live on any gateway and their last heartbeat
    in Valkey, in one round trip; empty when Valkey is away (then PostgreSQL's copy decides)."""
    try:
        return _seen(valkey, mitra_ids)
    except VALKEY_ERRORS:
        valkey_failed("presence")
        return {}


def _seen(valkey: redis.Redis, mitra_ids: list[str]) -> dict[str, Seen]:
    ids = sorted(set(mitra_ids))
    if not ids:
        return {}
    now = time.time()
    pipe = valkey.pipeline(transaction=False)
    for mitra_id in ids:
        pipe.zcount(sockets.key("mitra", mitra_id), now, "+inf")
        pipe.get(heartbeat_key(mitra_id))
    replies = pipe.execute()
    return {
        mitra_id: (bool(live), _seconds(beat))
        for mitra_id, live, beat in zip(ids, replies[::2], replies[1::2], strict=True)
    }


def _seconds(beat: str | bytes | None) -> float | None:
    """A heartbeat's time; one that does not parse counts as none, so it fails nobody else's lookup."""
    try:
        return None if beat is None else float(beat)
    except ValueError:
        return None


def reachable(conn: Conn, config: AppConfig, mitra_id: str, seen: Seen | None) -> bool:
    """Whether the mitra can still hear the customer: a live socket on any gateway, or online and
    (while pings are required) a heartbeat within mitra_stale_after_seconds, the newer of Valkey's
    (`seen`, from seen_in_valkey) and PostgreSQL's. Valkey away (`seen` None): PostgreSQL's copy
    alone (heartbeats then go there directly)."""
    live, beat = seen if seen is not None else (False, None)
    if live:
        return True
    row = conn.execute(
        "SELECT is_online, extract(epoch FROM COALESCE(last_heartbeat_at, changed_at))::float8 AS last "
        "FROM mitra_online_status WHERE mitra_id = %(mitra_id)s",
        {"mitra_id": mitra_id},
    ).fetchone()
    if row is None or not row["is_online"]:
        return False
    if not config.bool("require_ping"):
        return True
    last = max(float(row["last"] or 0.0), beat or 0.0)
    return time.time() - last <= config.int("mitra_stale_after_seconds")
