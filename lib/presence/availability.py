"""Who can take a new chat: the customers' home-screen answer (`{available, count}`, polled every
5 s by every idle app) and pairing's candidate list."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import redis
from psycopg import sql

from lib.chat.states import LIVE, in_states
from lib.config.app import AppConfig
from lib.db import Database
from lib.presence.keys import DEACTIVATED, ONLINE, SNAPSHOT, SNAPSHOT_SECONDS, capacity_key, heartbeat_key
from lib.valkey import VALKEY_ERRORS, valkey_failed

LOCAL_CACHE_SECONDS = 1.0


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


def availability(db: Database, valkey: redis.Redis, config: AppConfig, cache: AvailabilityCache) -> dict[str, Any]:
    """{available, count}: memory, then the shared Valkey snapshot, then a fresh count (Valkey, or
    PostgreSQL when Valkey fails)."""
    cached = cache.get()
    if cached is not None:
        return cached
    try:
        raw = valkey.get(SNAPSHOT)
        if raw:
            value: dict[str, Any] = json.loads(raw)
        else:
            count = len(_available_from_valkey(valkey, config))
            value = {"available": count > 0, "count": count}
            valkey.set(SNAPSHOT, json.dumps(value), ex=SNAPSHOT_SECONDS)
    except VALKEY_ERRORS:
        valkey_failed("availability")
        count = len(available_from_postgres(db, config))
        value = {"available": count > 0, "count": count}
    cache.put(value)
    return value


def _available_from_valkey(valkey: redis.Redis, config: AppConfig) -> list[str]:
    """O(online mitras): the online set minus deactivated, filtered by heartbeat age and capacity."""
    online = sorted(str(m) for m in valkey.sdiff([ONLINE, DEACTIVATED]))
    if not online:
        return []
    pipe = valkey.pipeline(transaction=False)
    for mitra_id in online:
        pipe.get(heartbeat_key(mitra_id))
        pipe.get(capacity_key(mitra_id))
    values = pipe.execute()
    max_live = config.int("max_customers_per_mitra")
    stale_after = config.int("mitra_stale_after_seconds")
    require_ping = config.bool("require_ping")
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


_AVAILABLE = sql.SQL(
    "SELECT s.mitra_id, s.last_heartbeat_at "
    "FROM mitra_online_status s JOIN mitras m ON m.id = s.mitra_id "
    "WHERE s.is_online AND m.is_active "
    "AND (SELECT count(*) FROM chat_sessions c WHERE c.mitra_id = s.mitra_id AND {live}) < %(max_customers)s "
    "ORDER BY s.mitra_id"
).format(live=in_states("c.status", LIVE))


def available_from_postgres(db: Database, config: AppConfig) -> list[str]:
    rows = db.fetch_all(_AVAILABLE, {"max_customers": config.int("max_customers_per_mitra")})
    return _fresh(config, rows, beats=None)


def _fresh(config: AppConfig, rows: list[dict[str, Any]], beats: dict[str, float] | None) -> list[str]:
    if not config.bool("require_ping"):
        return [str(r["mitra_id"]) for r in rows]
    stale_after = config.int("mitra_stale_after_seconds")
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


def find_available_mitras(db: Database, valkey: redis.Redis, config: AppConfig) -> list[str]:
    """For pairing: online, active, fresh heartbeat, under capacity. Candidates and capacity come
    from PostgreSQL (the truth, via the partial online index, so O(online mitras)); the freshest
    heartbeats from Valkey when it answers (PostgreSQL's copy lags by the flush interval)."""
    rows = db.fetch_all(_AVAILABLE, {"max_customers": config.int("max_customers_per_mitra")})
    beats: dict[str, float] = {}
    if rows:
        try:
            ids = [str(r["mitra_id"]) for r in rows]
            values = valkey.mget([heartbeat_key(i) for i in ids])
            beats = {i: float(v) for i, v in zip(ids, values, strict=True) if v is not None}
        except VALKEY_ERRORS:
            valkey_failed("availability")
            beats = {}
    return _fresh(config, rows, beats)
