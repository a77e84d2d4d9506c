"""Reads kept in a process's memory until PostgreSQL says they changed.

Triggers NOTIFY a channel with a key (a customer id) whenever a row behind a kept read changes,
whoever changes it, and PostgreSQL delivers that at commit and only then (migrations/0012).
`Changes` is one LISTEN connection per process for every channel; each `Kept` is one read by key.

While the connection is down nothing is kept (every read goes to PostgreSQL) and everything kept
before is dropped, since changes may have been missed; entries also lapse after `ttl` as a last
resort. A read that raced a change is not kept: a generation counter moves with every change
heard, and a value is stored only if it did not move while the row was being read. What is left
is the moment between a commit and its notification reaching the listener (about a millisecond),
during which another process may still answer with the value from before; the process that made
a change calls `forget` and answers with it at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import psycopg

from lib.db import Database

log = logging.getLogger(__name__)

V = TypeVar("V")


class Kept(Generic[V]):
    """`load(key)` from memory; `keep(value)` says which values may be kept at all."""

    def __init__(
        self,
        changes: Changes,
        channel: str,
        load: Callable[[str], V],
        *,
        keep: Callable[[V], bool] = lambda _: True,
        ttl: float = 60.0,
        max_entries: int = 100_000,
    ) -> None:
        self._changes = changes
        self._load = load
        self._keep = keep
        self._ttl = ttl
        self._max = max_entries
        self._values: dict[str, tuple[float, V]] = {}
        self._generation = 0
        self._lock = threading.Lock()
        changes.register(channel, self)

    def get(self, key: str) -> V:
        """The value (shared: callers must not change it). What `load` raises is raised, not kept."""
        self._changes.start()
        now = time.monotonic()
        kept = self._values.get(key)
        if kept is not None and kept[0] > now:
            return kept[1]
        generation = self._generation
        value = self._load(key)
        if self._keep(value):
            with self._lock:
                if self._changes.listening and self._generation == generation:
                    if len(self._values) >= self._max:
                        self._values.pop(next(iter(self._values)))  # the oldest entry
                    self._values[key] = (now + self._ttl, value)
        return value

    def forget(self, key: str) -> None:
        with self._lock:
            self._generation += 1
            self._values.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._values.clear()


class Changes:
    """The process's LISTEN connection, started by the first read; it hands each notification to
    the caches of its channel and clears them all whenever the link comes or goes."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._caches: dict[str, list[Kept[object]]] = {}
        self._listening = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def register(self, channel: str, cache: Kept[V]) -> None:
        if self._thread is not None:
            raise RuntimeError("register every cache before the first read")
        self._caches.setdefault(channel, []).append(cache)  # type: ignore[arg-type]

    @property
    def listening(self) -> bool:
        return self._listening

    def start(self) -> None:
        """Start listening (the first read does it otherwise); nothing is kept until it listens."""
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._listen, name="db-changes", daemon=True)
                    self._thread.start()

    def _linked(self, listening: bool) -> None:
        self._listening = listening
        for caches in self._caches.values():
            for cache in caches:
                cache.clear()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                with self._db.dedicated("changes") as conn:
                    for channel in self._caches:
                        conn.execute(f"LISTEN {channel}")
                    self._linked(True)
                    checked = time.monotonic()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):  # short, so close() is quick
                            for cache in self._caches.get(note.channel, ()):
                                cache.forget(note.payload)
                        if time.monotonic() - checked > 5.0:
                            conn.execute("SELECT 1")  # a dead link shows here, not only when a change is due
                            checked = time.monotonic()
            except psycopg.Error as exc:
                if self._listening:
                    log.warning("kept reads off: lost the LISTEN connection (%s)", type(exc).__name__)
            finally:
                self._linked(False)
            self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=3)
