"""Revoked sessions, known to every process within about a second, with no per-request query.

Each process holds the ids of sessions revoked within the last access-token lifetime (older
revocations no longer matter: their access tokens have expired). Revocations arrive over the bus
at once; a PostgreSQL poll is the safety net (every second while the bus is down, every few
seconds otherwise), and the set is loaded from PostgreSQL when the process starts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from lib.bus import Bus
from lib.db import Database
from lib.errors import ApiError

log = logging.getLogger(__name__)

CHANNEL = "auth:revoked"
OVERLAP = timedelta(seconds=5)  # re-read a little: revoked_at is the transaction start, commits lag


class RevocationList:
    def __init__(
        self,
        db: Database,
        bus: Bus | None,
        *,
        ttl_seconds: int,
        poll_seconds: float = 1.0,
        idle_poll_seconds: float = 5.0,
    ) -> None:
        self._db = db
        self._bus = bus
        self._ttl = ttl_seconds
        self._poll = poll_seconds
        self._idle_poll = idle_poll_seconds
        self._ids: dict[str, float] = {}  # session id -> monotonic time after which it can be forgotten
        self._hooks: list[Callable[[list[str]], None]] = []
        self._since: datetime | None = None
        self._lock = threading.Lock()
        self._started = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def is_revoked(self, session_id: str) -> bool:
        if not self._started:
            self.start()
        return session_id in self._ids

    def add(self, session_ids: list[str]) -> None:
        forget_at = time.monotonic() + self._ttl + 60
        with self._lock:
            new = [sid for sid in session_ids if sid not in self._ids]
            for sid in session_ids:
                self._ids[sid] = forget_at
            hooks = list(self._hooks)
        for hook in hooks:
            if new:
                hook(new)

    def on_revoked(self, hook: Callable[[list[str]], None]) -> None:
        """Called (from whichever thread learnt it) with session ids newly known to be revoked:
        the realtime gateway closes their sockets."""
        with self._lock:
            self._hooks.append(hook)

    def revoke_sessions(self, session_ids: list[str], *, reason: str) -> list[str]:
        """End these sessions: PostgreSQL first, then every process. Returns the ids it revoked."""
        rows = self._db.fetch_all(
            "UPDATE auth_sessions SET revoked_at = now(), revoked_reason = %(reason)s "
            "WHERE id = ANY(%(session_ids)s::uuid[]) AND revoked_at IS NULL RETURNING id",
            {"session_ids": session_ids, "reason": reason},
        )
        return self.announce([str(r["id"]) for r in rows])

    def revoke_user(self, user_type: str, user_id: str, *, reason: str, keep: str | None = None) -> list[str]:
        """End every session of a user (but `keep`, the caller's own, when given)."""
        rows = self._db.fetch_all(
            "UPDATE auth_sessions SET revoked_at = now(), revoked_reason = %(reason)s "
            "WHERE user_type = %(user_type)s AND user_id = %(user_id)s AND revoked_at IS NULL "
            "AND id IS DISTINCT FROM %(keep)s::uuid RETURNING id",
            {"user_type": user_type, "user_id": user_id, "keep": keep, "reason": reason},
        )
        return self.announce([str(r["id"]) for r in rows])

    def announce(self, session_ids: list[str]) -> list[str]:
        """After the database says they are revoked (here, or in the caller's committed
        transaction): this process now, the others over the bus (and their poll, should this
        process die first)."""
        if session_ids:
            self.add(session_ids)
            if self._bus is not None:
                self._bus.publish(CHANNEL, ",".join(session_ids))
        return session_ids

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        if self._bus is not None:
            self._bus.subscribe(CHANNEL, lambda message: self.add([s for s in message.split(",") if s]))
            self._bus.on_reconnect(self._poll_once)
        try:
            self._poll_once()
        except ApiError:
            log.warning("revocation list: database unavailable at start; retrying in the background")
        self._thread = threading.Thread(target=self._run, name="revocation-poll", daemon=True)
        self._thread.start()

    def _poll_once(self) -> None:
        if self._since is None:
            rows = self._db.fetch_all(
                "SELECT id, revoked_at FROM auth_sessions "
                "WHERE revoked_at > now() - make_interval(secs => %(ttl_seconds)s) ORDER BY revoked_at",
                {"ttl_seconds": self._ttl + 60},
            )
        else:
            rows = self._db.fetch_all(
                "SELECT id, revoked_at FROM auth_sessions WHERE revoked_at > %(since)s ORDER BY revoked_at",
                {"since": self._since - OVERLAP},
            )
        self.add([str(r["id"]) for r in rows])
        if rows:
            self._since = max(self._since or rows[-1]["revoked_at"], rows[-1]["revoked_at"])
        elif self._since is None:
            now = self._db.fetch_one("SELECT now() AS now")
            self._since = now["now"] if now else None
        self._prune()

    def _prune(self) -> None:
        now = time.monotonic()
        with self._lock:
            if any(t < now for t in self._ids.values()):
                self._ids = {k: t for k, t in self._ids.items() if t >= now}

    def _run(self) -> None:
        while not self._stop.is_set():
            healthy = self._bus is not None and self._bus.healthy
            if self._stop.wait(self._idle_poll if healthy else self._poll):
                return
            try:
                self._poll_once()
            except Exception:  # keep polling; the database may come back
                log.warning("revocation poll failed", exc_info=True)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)
