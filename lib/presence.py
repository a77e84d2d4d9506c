"""Mitra presence and availability. PostgreSQL is the truth; Valkey mirrors it for the hot paths
(heartbeats, the availability poll) and every Valkey read falls back to PostgreSQL.

Valkey keys (DOMAIN.md): `mitras:online` and `mitras:deactivated` (sets), `mitra:capacity:<id>`
(live sessions), `mitra:heartbeat:<id>` (unix time of the last heartbeat) and
`availability:snapshot` ({available, count}, 10 s).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from lib.auth.flows import revoke_sessions
from lib.db import Conn
from lib.errors import Forbidden, NotFound
from lib.services import Services
from lib.valkey import VALKEY_ERRORS

log = logging.getLogger(__name__)

ONLINE, DEACTIVATED, SNAPSHOT = "mitras:online", "mitras:deactivated", "availability:snapshot"
SEEDED = "presence:seeded"  # gone after a Valkey restart or flush: the mirror must be rebuilt
SNAPSHOT_SECONDS = 10
LOCAL_CACHE_SECONDS = 1.0
# A mitra's live sessions are written as the literal `status IN ('active', 'extending', 'closing')` in
# every query, the predicate of the partial index chat_sessions_live_by_mitra_idx: a bound parameter
# would keep the planner from using that index.


def heartbeat_key(mitra_id: str) -> str:
    return f"mitra:heartbeat:{mitra_id}"


def capacity_key(mitra_id: str) -> str:
    return f"mitra:capacity:{mitra_id}"


_LIVE_COUNT = (
    "SELECT count(*) AS n FROM chat_sessions WHERE mitra_id = %(m)s AND status IN ('active', 'extending', 'closing')"
)


def live_sessions(conn: Conn, mitra_id: str) -> int:
    row = conn.execute(_LIVE_COUNT, {"m": mitra_id}).fetchone()
    return int(row["n"]) if row else 0


def recompute_capacity(services: Services, mitra_id: str) -> int:
    """Count live sessions in PostgreSQL and mirror the number; call after every session transition."""
    with services.db.connection() as conn:
        count = live_sessions(conn, mitra_id)
    try:
        pipe = services.valkey.pipeline(transaction=False)
        pipe.set(capacity_key(mitra_id), count)
        pipe.delete(SNAPSHOT)
        pipe.execute()
    except VALKEY_ERRORS:
        pass
    return count


def status_doc(services: Services, mitra_id: str) -> dict[str, Any]:
    capacity = services.config.int("max_customers_per_mitra")
    with services.db.connection() as conn:
        row = conn.execute(
            "SELECT is_online FROM mitra_online_status WHERE mitra_id = %(m)s", {"m": mitra_id}
        ).fetchone()
        live = live_sessions(conn, mitra_id)
    return {
        "is_online": bool(row and row["is_online"]),
        "active_session_count": live,
        "capacity": capacity,
        "available_slots": max(0, capacity - live),
        "heartbeat_cadence_seconds": services.settings.mitra_heartbeat_cadence_seconds,
        "stale_after_seconds": services.config.int("mitra_stale_after_seconds"),
    }


def set_online(services: Services, mitra_id: str, online: bool, reason: str = "manual") -> bool:
    """PostgreSQL first (state + log row when it changes), then the Valkey mirror. Returns changed."""
    with services.db.connection() as conn:
        if online:
            active = conn.execute("SELECT is_active FROM mitras WHERE id = %(m)s", {"m": mitra_id}).fetchone()
            if active is None:
                raise NotFound()
            if not active["is_active"]:
                raise Forbidden("This Bestie account is inactive", code="ACCOUNT_INACTIVE")
        previous = conn.execute(
            "SELECT is_online FROM mitra_online_status WHERE mitra_id = %(m)s FOR UPDATE", {"m": mitra_id}
        ).fetchone()
        changed = previous is None or previous["is_online"] != online
        # Going online counts as a heartbeat: a fresh online mitra is not stale.
        conn.execute(
            "INSERT INTO mitra_online_status (mitra_id, is_online, last_heartbeat_at, changed_at) "
            "VALUES (%(m)s, %(o)s, CASE WHEN %(o)s THEN now() END, now()) "
            "ON CONFLICT (mitra_id) DO UPDATE SET is_online = EXCLUDED.is_online, "
            "last_heartbeat_at = CASE WHEN %(o)s THEN now() ELSE mitra_online_status.last_heartbeat_at END, "
            "changed_at = CASE WHEN mitra_online_status.is_online <> EXCLUDED.is_online THEN now() "
            "ELSE mitra_online_status.changed_at END",
            {"m": mitra_id, "o": online},
        )
        if changed:
            conn.execute(
                "INSERT INTO mitra_online_logs (mitra_id, is_online, reason) VALUES (%(m)s, %(o)s, %(r)s)",
                {"m": mitra_id, "o": online, "r": reason},
            )
        live = live_sessions(conn, mitra_id)
    try:
        pipe = services.valkey.pipeline(transaction=False)
        if online:
            pipe.sadd(ONLINE, mitra_id)
            pipe.set(heartbeat_key(mitra_id), time.time())
        else:
            pipe.srem(ONLINE, mitra_id)
        pipe.set(capacity_key(mitra_id), live)
        pipe.delete(SNAPSHOT)
        pipe.execute()
    except VALKEY_ERRORS:
        log.warning("presence mirror not updated for %s (Valkey down); the worker heals it", mitra_id)
    return changed


def heartbeat(services: Services, mitra_id: str) -> None:
    """The hot path: one Valkey round trip, no PostgreSQL write (the worker flushes in batches)."""
    try:
        pipe = services.valkey.pipeline(transaction=False)
        pipe.sismember(DEACTIVATED, mitra_id)
        pipe.set(heartbeat_key(mitra_id), time.time(), ex=86400)
        deactivated, _ = pipe.execute()
    except VALKEY_ERRORS:
        row = services.db.fetch_one(
            "WITH m AS (SELECT is_active FROM mitras WHERE id = %(m)s), "
            "u AS (UPDATE mitra_online_status SET last_heartbeat_at = now() "
            "      WHERE mitra_id = %(m)s AND (SELECT is_active FROM m) RETURNING 1) "
            "SELECT (SELECT is_active FROM m) AS is_active",
            {"m": mitra_id},
        )
        deactivated = not (row and row["is_active"])
    if deactivated:
        raise Forbidden("This Bestie account is inactive", code="ACCOUNT_INACTIVE")


class AvailabilityCache:
    """Per-process memory of the last answer, so a burst of polls costs no I/O at all."""

    def __init__(self) -> None:
        self._value: dict[str, Any] | None = None
        self._at = 0.0
        self._lock = threading.Lock()

    def get(self) -> dict[str, Any] | None:
        return self._value if time.monotonic() - self._at < LOCAL_CACHE_SECONDS else None

    def put(self, value: dict[str, Any]) -> None:
        with self._lock:
            self._value, self._at = value, time.monotonic()


def availability(services: Services, cache: AvailabilityCache) -> dict[str, Any]:
    """{available, count} for the customers' home screen: memory, then the shared Valkey snapshot,
    then a fresh count (Valkey, or PostgreSQL when Valkey fails)."""
    cached = cache.get()
    if cached is not None:
        return cached
    try:
        raw = services.valkey.get(SNAPSHOT)
        if raw:
            value: dict[str, Any] = json.loads(raw)
        else:
            count = len(_available_from_valkey(services))
            value = {"available": count > 0, "count": count}
            services.valkey.set(SNAPSHOT, json.dumps(value), ex=SNAPSHOT_SECONDS)
    except VALKEY_ERRORS:
        count = len(available_from_postgres(services))
        value = {"available": count > 0, "count": count}
    cache.put(value)
    return value


def _available_from_valkey(services: Services) -> list[str]:
    """O(online mitras): the online set minus deactivated, filtered by heartbeat age and capacity."""
    client = services.valkey
    online = sorted(str(m) for m in client.sdiff([ONLINE, DEACTIVATED]))
    if not online:
        return []
    pipe = client.pipeline(transaction=False)
    for mitra_id in online:
        pipe.get(heartbeat_key(mitra_id))
        pipe.get(capacity_key(mitra_id))
    values = pipe.execute()
    max_live = services.config.int("max_customers_per_mitra")
    stale_after = services.config.int("mitra_stale_after_seconds")
    require_ping = services.config.bool("require_ping")
    now = time.time()
    found = []
    for i, mitra_id in enumerate(online):
        beat, live = values[2 * i], values[2 * i + 1]
        if require_ping and (beat is None or now - float(beat) > stale_after):
            continue
        if int(live or 0) >= max_live:
            continue
        found.append(mitra_id)
    return found


_AVAILABLE_SQL = """
SELECT s.mitra_id, s.last_heartbeat_at
FROM mitra_online_status s JOIN mitras m ON m.id = s.mitra_id
WHERE s.is_online AND m.is_active
  AND (SELECT count(*) FROM chat_sessions c
       WHERE c.mitra_id = s.mitra_id AND c.status IN ('active', 'extending', 'closing')) < %(max)s
ORDER BY s.mitra_id
"""


def available_from_postgres(services: Services) -> list[str]:
    rows = services.db.fetch_all(_AVAILABLE_SQL, {"max": services.config.int("max_customers_per_mitra")})
    return _fresh(services, rows, beats=None)


def _fresh(services: Services, rows: list[dict[str, Any]], beats: dict[str, float] | None) -> list[str]:
    if not services.config.bool("require_ping"):
        return [str(r["mitra_id"]) for r in rows]
    stale_after = services.config.int("mitra_stale_after_seconds")
    now = time.time()
    found = []
    for r in rows:
        mitra_id = str(r["mitra_id"])
        last = r["last_heartbeat_at"].timestamp() if r["last_heartbeat_at"] else 0.0
        if beats and beats.get(mitra_id):
            last = max(last, beats[mitra_id])
        if now - last <= stale_after:
            found.append(mitra_id)
    return found


def find_available_mitras(services: Services) -> list[str]:
    """For pairing: online, active, fresh heartbeat, under capacity. Candidates and capacity come
    from PostgreSQL (the truth, via the partial online index, so O(online mitras)); the freshest
    heartbeats from Valkey when it answers (PostgreSQL's copy lags by the flush interval)."""
    rows = services.db.fetch_all(_AVAILABLE_SQL, {"max": services.config.int("max_customers_per_mitra")})
    beats: dict[str, float] = {}
    if rows:
        try:
            ids = [str(r["mitra_id"]) for r in rows]
            values = services.valkey.mget([heartbeat_key(i) for i in ids])
            beats = {i: float(v) for i, v in zip(ids, values, strict=True) if v is not None}
        except VALKEY_ERRORS:
            beats = {}
    return _fresh(services, rows, beats)


def flush_heartbeats(services: Services) -> int:
    """Copy the online mitras' last heartbeats from Valkey to PostgreSQL in one statement."""
    try:
        online = sorted(str(m) for m in services.valkey.smembers(ONLINE))
        values = services.valkey.mget([heartbeat_key(i) for i in online]) if online else []
    except VALKEY_ERRORS:
        return 0  # heartbeats went straight to PostgreSQL meanwhile
    pairs = [(i, float(v)) for i, v in zip(online, values, strict=True) if v is not None]
    if not pairs:
        return 0
    return services.db.execute(
        "UPDATE mitra_online_status s SET last_heartbeat_at = to_timestamp(b.at) "
        "FROM unnest(%(ids)s::uuid[], %(ats)s::float8[]) AS b(id, at) "
        "WHERE s.mitra_id = b.id AND (s.last_heartbeat_at IS NULL OR s.last_heartbeat_at < to_timestamp(b.at))",
        {"ids": [p[0] for p in pairs], "ats": [p[1] for p in pairs]},
    )


def sweep_stale(services: Services) -> list[str]:
    """Set online mitras whose last heartbeat is older than mitra_stale_after_seconds offline."""
    if not services.config.bool("require_ping"):
        return []
    flush_heartbeats(services)
    with services.db.connection() as conn:
        rows = conn.execute(
            "UPDATE mitra_online_status SET is_online = false, changed_at = now() "
            "WHERE is_online AND COALESCE(last_heartbeat_at, changed_at) < now() - make_interval(secs => %(s)s) "
            "RETURNING mitra_id",
            {"s": services.config.int("mitra_stale_after_seconds")},
        ).fetchall()
        ids = [str(r["mitra_id"]) for r in rows]
        if ids:
            conn.execute(
                "INSERT INTO mitra_online_logs (mitra_id, is_online, reason) "
                "SELECT unnest(%(ids)s::uuid[]), false, 'stale_sweep'",
                {"ids": ids},
            )
    if ids:
        log.info("stale sweep set %d mitra(s) offline", len(ids))
        try:
            pipe = services.valkey.pipeline(transaction=False)
            pipe.srem(ONLINE, *ids)
            pipe.delete(SNAPSHOT)
            pipe.execute()
        except VALKEY_ERRORS:
            pass
    return ids


def reseed(services: Services) -> None:
    """Rebuild the mirror from PostgreSQL (at worker start, after a reconnect, and as drift heal).
    Sets are replaced atomically; a heartbeat newer in Valkey than in PostgreSQL is kept."""
    with services.db.connection() as conn:
        online = conn.execute(
            "SELECT s.mitra_id, s.last_heartbeat_at, "
            "(SELECT count(*) FROM chat_sessions c WHERE c.mitra_id = s.mitra_id "
            " AND c.status IN ('active', 'extending', 'closing')) AS live "
            "FROM mitra_online_status s WHERE s.is_online"
        ).fetchall()
        inactive = [str(r["id"]) for r in conn.execute("SELECT id FROM mitras WHERE NOT is_active").fetchall()]
    client = services.valkey
    pipe = client.pipeline(transaction=True)
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
            pipe.set(heartbeat_key(mitra_id), r["last_heartbeat_at"].timestamp(), nx=True, ex=86400)
    pipe.delete(SNAPSHOT)
    pipe.set(SEEDED, time.time())
    pipe.execute()


def heal(services: Services, full_every: float) -> bool:
    """Rebuild the mirror when Valkey lost it (restart, flush, failover) or every `full_every`
    seconds against drift. Cheap when nothing is due: one EXISTS/GET. Returns whether it rebuilt."""
    seeded = services.valkey.get(SEEDED)
    if seeded is not None and time.time() - float(seeded) < full_every:
        return False
    reseed(services)
    return True


def set_active(services: Services, mitra_id: str, active: bool) -> dict[str, Any] | None:
    """Activate or deactivate. Deactivation: offline (logged), every auth session revoked at once,
    out of every availability set."""
    row = services.db.fetch_one(
        "UPDATE mitras SET is_active = %(a)s, updated_at = now() WHERE id = %(m)s RETURNING *",
        {"a": active, "m": mitra_id},
    )
    if row is None:
        return None
    try:
        pipe = services.valkey.pipeline(transaction=False)
        if active:
            pipe.srem(DEACTIVATED, mitra_id)
        else:
            pipe.sadd(DEACTIVATED, mitra_id)
            pipe.srem(ONLINE, mitra_id)
        pipe.delete(SNAPSHOT)
        pipe.execute()
    except VALKEY_ERRORS:
        pass  # heartbeats then check PostgreSQL; the worker reseeds the sets
    if not active:
        set_online(services, mitra_id, False, reason="deactivation")
        revoke_sessions(services, user=("mitra", mitra_id), reason="mitra_deactivated")
    return row
