"""The chat-session vocabulary in lib/chat/states.py matches the schema and its partial index."""

from __future__ import annotations

import re

from psycopg import sql

from lib.chat import states
from lib.services import Services


def _quoted(text: str) -> set[str]:
    return set(re.findall(r"'([a-z_]+)'", text))


def test_the_status_check_allows_exactly_the_states(services: Services) -> None:
    row = services.db.fetch_one(
        "SELECT pg_get_constraintdef(oid) AS d FROM pg_constraint WHERE conname = 'chat_sessions_status_check'"
    )
    assert row is not None
    assert _quoted(row["d"]) == set(states.STATES)


def test_the_capacity_index_covers_exactly_the_live_states(services: Services) -> None:
    row = services.db.fetch_one("SELECT indexdef FROM pg_indexes WHERE indexname = 'chat_sessions_live_by_mitra_idx'")
    assert row is not None
    assert _quoted(row["indexdef"].split("WHERE", 1)[1]) == set(states.LIVE)


def test_live_counts_use_the_partial_index(services: Services) -> None:
    query = sql.SQL("EXPLAIN SELECT count(*) FROM chat_sessions WHERE mitra_id = %(m)s AND {live}").format(
        live=states.in_states("status", states.LIVE)
    )
    with services.db.connection() as conn:
        conn.execute("SET enable_seqscan = off")  # an empty table: make the planner show what it can use
        plan = "\n".join(r["QUERY PLAN"] for r in conn.execute(query, {"m": "00000000-0000-4000-8000-000000000000"}))
    assert "chat_sessions_live_by_mitra_idx" in plan


def test_groups_and_transitions() -> None:
    assert set(states.OPEN) == {states.SEARCHING, *states.LIVE}
    assert set(states.STATES) == set(states.OPEN) | set(states.ENDED)
    assert set(states.TRANSITIONS) == set(states.STATES)
    assert states.can_move(states.SEARCHING, states.ACTIVE)
    assert states.can_move(states.EXTENDING, states.ACTIVE)
    assert not states.can_move(states.COMPLETED, states.ACTIVE)
    assert not states.can_move(states.ACTIVE, states.SEARCHING)
    assert all(not states.TRANSITIONS[s] for s in states.ENDED)
