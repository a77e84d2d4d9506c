"""Mitra heartbeats, buffered in the process: the request only records the beat in memory, and a
background thread writes every beat of the last interval to Valkey in one pipeline (PostgreSQL
when Valkey is down), learning the deactivated mitras in the same round trip.

Why: the heartbeat is the busiest write (every online mitra, every 30 s), and a Valkey round trip
from Python cost more than the rest of the request (bench/profile.py). A beat reaches Valkey at most
FLUSH_SECONDS late, against a stale-after window of tens of seconds; a deactivation is seen by the
next flush (the revoked token already refuses the request sooner, through the revocation list).
Beats of the last interval are lost if the process is killed: the app beats again 30 s later.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable

import redis

from lib.db import Database
from lib.errors import Forbidden
from lib.presence.keys import DEACTIVATED, HEARTBEAT_TTL_SECONDS, heartbeat_key
from lib.valkey import VALKEY_ERRORS, valkey_failed

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5
# A beat further in the future than this is malformed: stored, it would keep its mitra fresh for good.
FUTURE_SLACK_SECONDS = 300.0

# This process's id, kept current across forks: os.getpid() is a system call, and on the hot path
# it cost as much as the rest of record().
_process = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _process.__setitem__(0, os.getpid()))


def checked_beats(
    beats: Iterable[tuple[object, object]], now: float | None = None
) -> tuple[dict[str, float], list[str]]:
    """The beats PostgreSQL can store, {canonical mitra id: unix time} (the latest of duplicates),
    and a short description of each one it cannot (an id that is no UUID, a time that is no number,
    not finite or in the future): those are left out, so they cannot fail the others' batch."""
    now = time.time() if now is None else now
    good: dict[str, float] = {}
    bad: list[str] = []
    for mitra_id, value in beats:
        try:
            canonical = str(uuid.UUID(str(mitra_id)))
            at = float(value)  # type: ignore[arg-type]  # a str from Valkey or a float from record()
        except (TypeError, ValueError):
            bad.append(f"{str(mitra_id)[:40]!r}={str(value)[:24]!r}")
            continue
        if not 0 < at <= now + FUTURE_SLACK_SECONDS:  # NaN fails this too
            bad.append(f"{canonical}={str(value)[:24]!r}")
            continue
        good[canonical] = max(at, good.get(canonical, at))
    return good, bad


def log_skipped(where: str, bad: list[str]) -> None:
    if bad:
        log.warning("%s: %d malformed heartbeat(s) skipped: %s", where, len(bad), ", ".join(bad[:5]))


class Heartbeats:
    def __init__(self, db: Database, valkey: redis.Redis, flush_seconds: float = FLUSH_SECONDS) -> None:
        self._db = db
        self._valkey = valkey
        self._flush_seconds = flush_seconds
        self._pending: dict[str, float] = {}
        self._deactivated: frozenset[str] | None = None  # None until the first flush of this process
        self._lock = threading.Lock()
        self._owner_pid = 0
        self._stop = threading.Event()

    def record(self, mitra_id: str) -> None:
        """The hot path: no I/O once the process has flushed once. 403 for a deactivated mitra."""
        if self._owner_pid != _process[0]:
            self._start()
        if self._deactivated is not None and mitra_id in self._deactivated:
            raise Forbidden("This Bestie account is inactive", code="ACCOUNT_INACTIVE")
        self._pending[mitra_id] = time.time()  # one dict store: atomic under the GIL

    def flush(self) -> int:
        """Write the pending beats and refresh the deactivated set; returns the beats written."""
        with self._lock:
            beats, self._pending = self._pending, {}
            known = self._deactivated or frozenset()
            beats = {m: at for m, at in beats.items() if m not in known}
            try:
                pipe = self._valkey.pipeline(transaction=False)
                for mitra_id, at in beats.items():
                    pipe.set(heartbeat_key(mitra_id), at, ex=HEARTBEAT_TTL_SECONDS)
                pipe.smembers(DEACTIVATED)
                *_, members = pipe.execute()
                self._deactivated = frozenset(str(m) for m in members)
            except VALKEY_ERRORS:
                valkey_failed("heartbeats")
                self._deactivated = self._flush_to_postgres(beats)
            return len(beats)

    def _flush_to_postgres(self, beats: dict[str, float]) -> frozenset[str]:
        checked, bad = checked_beats(beats.items())
        log_skipped("heartbeats to PostgreSQL", bad)
        with self._db.connection() as conn:
            if checked:
                conn.execute(
                    "UPDATE mitra_online_status s SET last_heartbeat_at = to_timestamp(b.at) "
                    "FROM unnest(%(mitra_ids)s::uuid[], %(beat_times)s::float8[]) AS b(id, at) "
                    "JOIN mitras m ON m.id = b.id AND m.is_active WHERE s.mitra_id = b.id",
                    {"mitra_ids": list(checked), "beat_times": list(checked.values())},
                )
            rows = conn.execute("SELECT id FROM mitras WHERE NOT is_active").fetchall()
        return frozenset(str(r["id"]) for r in rows)

    def _start(self) -> None:
        """The first beat of a process (after a fork too): learn the deactivated set, start the thread."""
        with self._lock:
            if self._owner_pid == _process[0]:
                return
            self._pending = {}
            self._owner_pid = _process[0]
        self.flush()
        threading.Thread(target=self._run, name="heartbeats", daemon=True).start()

    def _run(self) -> None:
        while not self._stop.wait(self._flush_seconds):
            try:
                self.flush()
            except Exception:  # a PostgreSQL outage too: keep beating, try again next interval
                log.warning("heartbeat flush failed", exc_info=True)

    def close(self) -> None:
        self._stop.set()
        if self._owner_pid == _process[0]:
            try:
                self.flush()
            except Exception:
                log.warning("final heartbeat flush failed", exc_info=True)
