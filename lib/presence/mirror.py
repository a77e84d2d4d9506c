"""The Valkey mirror of presence, kept in step with PostgreSQL: heartbeats copied back in
batches, the whole mirror rebuilt at worker start, after Valkey lost it, and against drift.

What is read from Valkey is checked item by item: a malformed id or value is skipped (and the next
rebuild replaces it), never the reason the other mitras' heartbeats are not copied or the mirror is
not rebuilt."""

from __future__ import annotations

import math
import time

import redis
from psycopg import sql

from lib.chat.states import LIVE, in_states
from lib.db import Database
from lib.presence.beats import FUTURE_SLACK_SECONDS, checked_beats, log_skipped
from lib.presence.keys import (
    DEACTIVATED,
    HEARTBEAT_TTL_SECONDS,
    ONLINE,
    SEEDED,
    SNAPSHOT,
    capacity_key,
    heartbeat_key,
)
from lib.valkey import VALKEY_ERRORS, valkey_failed


def flush_heartbeats(db: Database, valkey: redis.Redis) -> int:
    """Copy the online mitras' last heartbeats from Valkey to PostgreSQL in one statement."""
    try:
        online = sorted(str(m) for m in valkey.smembers(ONLINE))
        values = valkey.mget([heartbeat_key(i) for i in online]) if online else []
    except VALKEY_ERRORS:
        valkey_failed("presence")
        return 0  # heartbeats went straight to PostgreSQL meanwhile
    beats, bad = checked_beats((i, v) for i, v in zip(online, values, strict=True) if v is not None)
    log_skipped("heartbeat flush", bad)
    if not beats:
        return 0
    return db.execute(
        "UPDATE mitra_online_status s SET last_heartbeat_at = to_timestamp(b.at) "
        "FROM unnest(%(mitra_ids)s::uuid[], %(beat_times)s::float8[]) AS b(id, at) "
        "WHERE s.mitra_id = b.id AND (s.last_heartbeat_at IS NULL OR s.last_heartbeat_at < to_timestamp(b.at))",
        {"mitra_ids": list(beats), "beat_times": list(beats.values())},
    )


_ONLINE_WITH_LIVE = sql.SQL(
    "SELECT s.mitra_id, s.last_heartbeat_at, "
    "(SELECT count(*) FROM chat_sessions c WHERE c.mitra_id = s.mitra_id AND {live}) AS live "
    "FROM mitra_online_status s WHERE s.is_online"
).format(live=in_states("c.status", LIVE))


def reseed(db: Database, valkey: redis.Redis) -> None:
    """Rebuild the mirror from PostgreSQL. Sets are replaced atomically; a heartbeat newer in
    Valkey than in PostgreSQL is kept."""
    with db.connection() as conn:
        online = conn.execute(_ONLINE_WITH_LIVE).fetchall()
        inactive = [str(r["id"]) for r in conn.execute("SELECT id FROM mitras WHERE NOT is_active").fetchall()]
    pipe = valkey.pipeline(transaction=True)
    for key, members in ((ONLINE, [str(r["mitra_id"]) for r in online]), (DEACTIVATED, inactive)):
        pipe.delete(f"{key}:reseed")
        if members:
            pipe.sadd(f"{key}:reseed", *members)
            pipe.rename(f"{key}:reseed", key)
        else:
            pipe.delete(key)
    for r in online:
        mitra_id = str(r["mitra_id"])
        pipe.set(capacity_key(mitra_id), r["live"])
        if r["last_heartbeat_at"] is not None:
            pipe.set(heartbeat_key(mitra_id), r["last_heartbeat_at"].timestamp(), nx=True, ex=HEARTBEAT_TTL_SECONDS)
    pipe.delete(SNAPSHOT)
    pipe.set(SEEDED, time.time())
    pipe.execute()


def heal(db: Database, valkey: redis.Redis, full_every: float) -> bool:
    """Rebuild the mirror when Valkey lost it (restart, flush, failover) or every `full_every`
    seconds against drift. Cheap when nothing is due: one GET. Returns whether it rebuilt."""
    age = time.time() - _unix_time(valkey.get(SEEDED))
    if -FUTURE_SLACK_SECONDS <= age < full_every:  # an absent, malformed or future stamp: rebuild
        return False
    reseed(db, valkey)
    return True


def _unix_time(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
