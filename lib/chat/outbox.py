"""What a chat transaction leaves to do once it has committed: the events to publish and the
mitras whose capacity to recompute; and `fire_due`, the one way a deadline is claimed and fired.

Each item has its own fate (STYLE.md 13): a mitra whose capacity cannot be recomputed, an event that
cannot be encoded or a deadline row whose firing fails is logged and left out; the others are still
recomputed, published and fired."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from lib.chat.events import ChatEvents, Party, frame
from lib.db import Conn, Database, Query
from lib.metrics import m
from lib.presence.state import recompute_capacity

log = logging.getLogger(__name__)

Item = tuple[list[Party], str, dict[str, Any]]


@dataclass
class Outbox:
    """Events to publish once the transaction that caused them has committed."""

    items: list[Item] = field(default_factory=list)
    capacity: set[str] = field(default_factory=set)  # mitras whose live count changed
    counted: list[Callable[[], None]] = field(default_factory=list)  # metrics, so a rollback counts nothing

    def add(self, to: list[Party], event_type: str, data: dict[str, Any]) -> None:
        self.items.append((to, event_type, data))

    def flush(self, db: Database, valkey: redis.Redis, events: ChatEvents) -> None:
        items, capacity, counted = self.items, self.capacity, self.counted
        self.items, self.capacity, self.counted = [], set(), []
        for mitra_id in sorted(capacity):
            try:
                recompute_capacity(db, valkey, mitra_id)
            except Exception:  # the presence heal rebuilds the mirror from PostgreSQL within a minute
                log.exception("capacity of mitra %r not recomputed", mitra_id[:64])
        # All events in one round trip, but only those that encode: publish_each would stop at the
        # first that does not, after having woken the recipients of the ones before it.
        events.publish_each([item for item in items if _encodes(item)])
        for count in counted:
            try:
                count()
            except Exception:
                log.exception("a metric of a committed chat transaction was not counted")

    def mark(self) -> tuple[int, frozenset[str], int]:
        return len(self.items), frozenset(self.capacity), len(self.counted)

    def undo(self, mark: tuple[int, frozenset[str], int]) -> None:
        """Forget what was added since `mark` (its transaction was rolled back)."""
        items, capacity, counted = mark
        del self.items[items:]
        self.capacity = set(capacity)
        del self.counted[counted:]


def _encodes(item: Item) -> bool:
    _, event_type, data = item
    try:
        frame(event_type, data)
    except (TypeError, ValueError):  # orjson.JSONEncodeError is a TypeError; the data stays out of the log
        log.exception("event %r not published: its data cannot be encoded", event_type[:64])
        return False
    return True


Fire = Callable[[Conn, Outbox, dict[str, Any]], object]


def fire_due(
    db: Database,
    valkey: redis.Redis,
    events: ChatEvents,
    deadline: str,
    claim: Query,
    fire: Fire,
    limit: int = 100,
    *,
    prepare: Callable[[list[dict[str, Any]]], object] | None = None,
) -> list[dict[str, Any]]:
    """Claim the due rows (`claim` selects them, with `clock_timestamp() - <deadline> AS lateness`,
    `... LIMIT %(limit)s FOR UPDATE SKIP LOCKED`) and fire each, all in one transaction: a worker killed
    midway fires none of them (they are claimed again by the next tick), and two workers never claim
    the same row. Each row fires in its own savepoint: one whose firing fails is rolled back alone
    (with what it added to the outbox), stays due and is tried again next tick; the others commit.
    Events leave after the commit. `prepare(rows)` runs once between the claim and the firings: what
    the rows need from elsewhere is fetched there in one round trip, not one per row inside the
    transaction. Returns the rows fired."""
    outbox = Outbox()
    fired: list[dict[str, Any]] = []
    with db.connection() as conn:
        rows = conn.execute(claim, {"limit": limit}).fetchall()
        if rows and prepare is not None:
            prepare(rows)
        for row in rows:
            mark = outbox.mark()
            try:
                with conn.transaction():
                    fire(conn, outbox, row)
            except Exception:  # noqa: BLE001 (any failure of one row; report() logs its traceback)
                outbox.undo(mark)
                _failed.report(deadline, row)
                continue
            fired.append(row)
    outbox.counted.append(lambda: observe_lateness(deadline, fired))
    outbox.flush(db, valkey, events)
    return fired


class _FailedFirings:
    """A row whose firing fails stays due and comes back every tick (four a second): its traceback
    is logged the first time and then once a minute per row and process, not at every tick."""

    EVERY_SECONDS = 60.0

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def report(self, deadline: str, row: dict[str, Any]) -> None:
        key, now = (deadline, str(row.get("id"))), time.monotonic()
        with self._lock:
            if now - self._last.get(key, -self.EVERY_SECONDS) < self.EVERY_SECONDS:
                return
            if len(self._last) > 10_000:
                self._last.clear()
            self._last[key] = now
        log.exception("deadline %s of %s not fired (it stays due; the others were fired)", deadline, key[1])


_failed = _FailedFirings()


def observe_lateness(deadline: str, rows: list[dict[str, Any]]) -> None:
    """How late each fired deadline was (rows carry `lateness`, an interval)."""
    histogram = m().lateness.labels(deadline)
    for row in rows:
        histogram.observe(max(row["lateness"].total_seconds(), 0.0))
