"""The outbox and fire_due: one bad item (a mitra id, an event, a deadline row) fails alone; the
others are recomputed, published and fired."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from lib.chat import events as ev
from lib.chat import outbox as outbox_module
from lib.chat.outbox import Outbox, fire_due
from lib.db import Conn
from lib.presence.keys import capacity_key
from lib.services import Services


@pytest.fixture
def heard(services: Services) -> Iterator[Any]:
    """Frames published to customers c1..c3, as (channel suffix, frame type) in arrival order."""
    listener = redis.Redis.from_url(services.settings.redis_url, decode_responses=True)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call,unused-ignore]
    db = services.settings.redis_url.rsplit("/", 1)[1]
    pubsub.subscribe(*(f"db{db}:user:customer:c{i}" for i in range(1, 4)))
    for _ in range(3):
        pubsub.get_message(timeout=1)

    def collect(expected: int) -> list[tuple[str, str]]:
        got = []
        for _ in range(expected + 1):  # one more than expected: nothing else may arrive
            message = pubsub.get_message(timeout=0.5)
            if message:
                got.append((message["channel"].rsplit(":", 1)[1], json.loads(message["data"])["type"]))
        return got

    yield collect
    pubsub.close()
    listener.close()


def test_one_bad_item_in_a_flush_fails_alone(services: Services, make_mitra, heard, caplog) -> None:
    mitra = str(make_mitra()["id"])
    services.valkey.set(capacity_key(mitra), 7)  # stale: the flush recomputes it (no live session: 0)
    counted: list[str] = []

    def broken_metric() -> None:
        raise RuntimeError("boom")

    outbox = Outbox()
    outbox.capacity |= {"not-a-uuid", mitra}
    outbox.add([ev.customer("c1")], "session.closing", {"session_id": "s1"})
    outbox.add([ev.customer("c2")], "session.closing", {"session_id": "\ud800"})  # a lone surrogate
    outbox.add([ev.customer("c2")], "session.closing", {"session_id": object()})  # not JSON at all
    outbox.add([ev.customer("c3")], "session.completed", {"session_id": "s3"})
    outbox.counted += [broken_metric, lambda: counted.append("after")]
    with caplog.at_level(logging.ERROR, logger="lib.chat.outbox"):
        outbox.flush(services.db, services.valkey, services.chat_events)

    assert services.valkey.get(capacity_key(mitra)) == "0"
    assert heard(2) == [("c1", "session.closing"), ("c3", "session.completed")]
    assert counted == ["after"]
    assert "capacity of mitra 'not-a-uuid' not recomputed" in caplog.text
    assert caplog.text.count("not published: its data cannot be encoded") == 2
    assert "\ud800" not in caplog.text  # the data itself stays out of the log
    assert outbox.items == []
    assert outbox.capacity == set()
    assert outbox.counted == []


_DUE = """
CREATE TABLE test_due (id int PRIMARY KEY, due_at timestamptz NOT NULL, fired boolean NOT NULL DEFAULT false);
INSERT INTO test_due (id, due_at) SELECT g, now() - interval '1 second' FROM generate_series(1, 3) g;
"""
_CLAIM = (
    "SELECT id, clock_timestamp() - due_at AS lateness FROM test_due WHERE NOT fired AND due_at <= now() "
    "ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
)


def test_a_deadline_row_whose_firing_fails_is_rolled_back_alone(
    services: Services, make_mitra, heard, caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    services.db.execute(_DUE)
    monkeypatch.setattr(outbox_module, "_failed", outbox_module._FailedFirings())  # a fresh log throttle
    mitras = {i: str(make_mitra(f"+62812000000{i}", f"Bestie {i}")["id"]) for i in (1, 2, 3)}

    def fire(conn: Conn, outbox: Outbox, row: dict[str, Any]) -> None:
        conn.execute("UPDATE test_due SET fired = true WHERE id = %(i)s", {"i": row["id"]})
        outbox.add([ev.customer(f"c{row['id']}")], "session.closing", {"session_id": row["id"]})
        outbox.capacity.add(mitras[row["id"]])
        if row["id"] == 2:  # a statement PostgreSQL refuses: the transaction is aborted at this point
            conn.execute("SELECT 'not-a-uuid'::uuid")

    with caplog.at_level(logging.ERROR, logger="lib.chat.outbox"):
        fired = fire_due(services.db, services.valkey, services.chat_events, "test_deadline", _CLAIM, fire)
        assert [r["id"] for r in fired] == [1, 3]
        assert heard(2) == [("c1", "session.closing"), ("c3", "session.closing")]
        # What the failed row added to the outbox went with its rollback.
        capacities = [services.valkey.get(capacity_key(mitras[i])) for i in (1, 2, 3)]
        assert capacities == ["0", None, "0"]
        rows = services.db.fetch_all("SELECT id, fired FROM test_due ORDER BY id")
        assert [(r["id"], r["fired"]) for r in rows] == [(1, True), (2, False), (3, True)]
        # Still due, so tried again next tick, and failing again; its traceback is not logged again.
        assert fire_due(services.db, services.valkey, services.chat_events, "test_deadline", _CLAIM, fire) == []
    assert caplog.text.count("deadline test_deadline of 2 not fired") == 1
