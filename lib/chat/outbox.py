"""What a chat transaction leaves to do once it has committed: the events to publish and the
mitras whose capacity to recompute; and `fire_due`, the one way a deadline is claimed and fired."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from lib.chat.events import ChatEvents, Party
from lib.db import Conn, Database, Query
from lib.metrics import m
from lib.presence.state import recompute_capacity


@dataclass
class Outbox:
    """Events to publish once the transaction that caused them has committed."""

    items: list[tuple[list[Party], str, dict[str, Any]]] = field(default_factory=list)
    capacity: set[str] = field(default_factory=set)  # mitras whose live count changed
    counted: list[Callable[[], None]] = field(default_factory=list)  # metrics, so a rollback counts nothing

    def add(self, to: list[Party], event_type: str, data: dict[str, Any]) -> None:
        self.items.append((to, event_type, data))

    def flush(self, db: Database, valkey: redis.Redis, events: ChatEvents) -> None:
        for mitra_id in sorted(self.capacity):
            recompute_capacity(db, valkey, mitra_id)
        events.publish_each(self.items)
        for count in self.counted:
            count()
        self.items, self.capacity, self.counted = [], set(), []


Fire = Callable[[Conn, Outbox, dict[str, Any]], object]


def fire_due(
    db: Database,
    valkey: redis.Redis,
    events: ChatEvents,
    deadline: str,
    claim: Query,
    fire: Fire,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Claim the due rows (`claim` selects them, with `clock_timestamp() - <deadline> AS lateness`,
    `... LIMIT %(n)s FOR UPDATE SKIP LOCKED`) and fire each, all in one transaction: a worker killed
    midway fires none of them (they are claimed again by the next tick), and two workers never claim
    the same row. Events leave after the commit."""
    outbox = Outbox()
    with db.connection() as conn:
        due = conn.execute(claim, {"n": limit}).fetchall()
        for row in due:
            fire(conn, outbox, row)
    outbox.counted.append(lambda: observe_lateness(deadline, due))
    outbox.flush(db, valkey, events)
    return due


def observe_lateness(deadline: str, rows: list[dict[str, Any]]) -> None:
    """How late each fired deadline was (rows carry `lateness`, an interval)."""
    histogram = m().lateness.labels(deadline)
    for row in rows:
        histogram.observe(max(row["lateness"].total_seconds(), 0.0))
