"""What a registered socket costs the gateway's memory: its record (runtime/gateway/connections.py)."""

from __future__ import annotations

import tracemalloc

from lib.principal import Principal
from runtime.gateway.connections import Connection, Connections


def test_an_idle_sockets_record_stays_small() -> None:
    """A Connection and its open count hold slots and lists: a __dict__ and two empty deques made it
    1,777 bytes, and the open count a 760-byte deque per user, on every one of 10,000 idle sockets."""
    principals = [Principal("customer", f"user-{i}", f"sign-in-{i}") for i in range(2000)]
    opens = Connections(lambda work: None, sockets_per_user=8, opens_per_minute=30, queue_limit=256)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        records = [Connection(None, p, None) for p in principals]  # type: ignore[arg-type]
        for p in principals:
            assert opens.open_refused_for((p.user_type, p.user_id), 1.0) == 0.0
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert len(records) == 2000
    assert grown / len(records) < 700  # 491 measured (2,622 with the dict and the deques)


def test_the_open_count_keeps_only_the_allowance() -> None:
    opens = Connections(lambda work: None, sockets_per_user=8, opens_per_minute=3, queue_limit=256)
    user = ("customer", "u")
    assert [opens.open_refused_for(user, t) for t in (1.0, 2.0, 3.0)] == [0.0, 0.0, 0.0]
    assert opens.open_refused_for(user, 4.0) == 57.0  # the first of the three lapses at 61 s
    assert opens.open_refused_for(user, 61.5) == 0.0
    assert opens._opens[user] == [2.0, 3.0, 61.5]


def test_a_user_closed_for_junk_opens_nothing_here_for_the_window() -> None:
    opens = Connections(lambda work: None, sockets_per_user=8, opens_per_minute=3, queue_limit=256)
    barred, other = ("customer", "u1"), ("customer", "u2")
    assert opens.open_refused_for(barred, 1.0) == 0.0
    opens.bar(barred, 2.0)
    assert opens.open_refused_for(barred, 2.5) == 59.5
    assert opens.open_refused_for(barred, 61.9) > 0.0  # refused opens are not counted either
    assert opens.open_refused_for(other, 3.0) == 0.0  # nobody else
    assert opens.open_refused_for(barred, 62.1) == 0.0  # the window is over: counted as ever
    assert [opens.open_refused_for(barred, t) for t in (62.2, 62.3)] == [0.0, 0.0]
    assert opens.open_refused_for(barred, 62.4) > 0.0  # three within the minute, as before the bar
    opens.bar(other, 70.0)
    opens.open_refused_for(("mitra", "m1"), 200.0)  # a later call prunes what has lapsed
    assert not opens._barred


def test_expiry_returns_each_due_socket_once_and_forgets_closed_ones() -> None:
    """Token expiry is one sweep a second over the sockets grouped by their expiry second: a socket
    is returned once when due, a removed one never, and no empty group is left behind."""
    conns = Connections(lambda work: None, sockets_per_user=8, opens_per_minute=30, queue_limit=256)
    made = [
        Connection(None, Principal("customer", f"u{i}", f"s{i}", expires_at=100 + i % 3), None)  # type: ignore[arg-type]
        for i in range(9)
    ]
    for conn in made:
        conns.add(conn)
    conns.remove(made[0])  # expires at 100, closed before
    assert set(conns.expired(100.5)) == {made[3], made[6]}
    assert conns.expired(100.9) == []  # each once
    assert set(conns.expired(102.0)) == set(made[1::3]) | set(made[2::3])
    for conn in made[1:]:
        conns.remove(conn)
    assert not conns._expiring
