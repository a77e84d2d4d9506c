"""The keyset helper: cursors stay what the apps hold, and a page walk built from its own predicate
and order returns every row once, ties in the sort key included (lib/pagination.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from psycopg import sql

from lib.db import Database
from lib.errors import ValidationFailed
from lib.pagination import NEWEST, Keyset
from lib.services import Services

ROW_ID = uuid.UUID("5f0c6a52-8a1e-4c38-9d0e-2f4b7f1c9a01")
# Written by the helper before it composed its own SQL: apps hold cursors like these across releases.
NEWEST_CURSOR = "WyIyMDI2LTEyLTA2VDA1OjMwOjAwLjEyMzQ1NiswNzowMCIsIjVmMGM2YTUyLThhMWUtNGMzOC05ZDBlLTJmNGI3ZjFjOWEwMSJd"
TIER_CURSOR = "WyJjaGF0IiwzLCI1ZjBjNmE1Mi04YTFlLTRjMzgtOWQwZS0yZjRiN2YxYzlhMDEiXQ"
TIERS = Keyset(("mode", "text"), ("sort_order", "int"), ("id", "uuid"), descending=False)


def test_cursors_are_byte_for_byte_what_apps_hold() -> None:
    when = datetime(2026, 12, 6, 5, 30, 0, 123456, tzinfo=timezone(timedelta(hours=7)))
    assert NEWEST.page([{"created_at": when, "id": ROW_ID}] * 2, 1)["next_cursor"] == NEWEST_CURSOR
    assert NEWEST.params({"cursor": NEWEST_CURSOR, "limit": 5}) == {
        "after_created_at": when,
        "after_id": ROW_ID,
        "limit": 6,
    }
    assert TIERS.page([{"mode": "chat", "sort_order": 3, "id": ROW_ID}] * 2, 1)["next_cursor"] == TIER_CURSOR
    assert TIERS.params({"cursor": TIER_CURSOR, "limit": 1})["after_sort_order"] == 3


def test_forged_cursor_is_a_validation_error() -> None:
    with pytest.raises(ValidationFailed):
        TIERS.params({"cursor": NEWEST_CURSOR, "limit": 1})  # a time where a mode belongs


def test_predicate_and_order_name_the_alias_and_direction() -> None:
    assert NEWEST.after("s").as_string(None) == (
        '(%(after_created_at)s::timestamptz IS NULL OR ("s"."created_at", "s"."id") '
        "< (%(after_created_at)s::timestamptz, %(after_id)s::uuid))"
    )
    assert NEWEST.order("s").as_string(None) == '"s"."created_at" DESC, "s"."id" DESC'
    assert TIERS.order().as_string(None) == '"mode", "sort_order", "id"'
    assert ">" in TIERS.after().as_string(None)


def test_an_unknown_expression_column_is_refused() -> None:
    with pytest.raises(ValueError, match="not a column"):
        NEWEST.after("s", changed_at=sql.SQL("now()"))


@pytest.fixture
def db(services: Services) -> Database:
    """A table whose sort keys tie: four rows share each created_at, two share each (mode, sort_order)."""
    services.db.execute(
        "CREATE TABLE keyset_walk (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), serial bigint NOT NULL, "
        "created_at timestamptz NOT NULL, ended_at timestamptz, mode text NOT NULL, sort_order int NOT NULL)"
    )
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(13):
        services.db.execute(
            "INSERT INTO keyset_walk (serial, created_at, ended_at, mode, sort_order) "
            "VALUES (%(serial)s, %(created_at)s, %(ended_at)s, %(mode)s, %(sort_order)s)",
            {
                "serial": n,
                "created_at": base + timedelta(minutes=n // 4),
                "ended_at": None if n % 3 == 0 else base + timedelta(minutes=n % 2),
                "mode": ("call", "chat")[n % 2],
                "sort_order": n // 4,
            },
        )
    return services.db


def _walk(db: Database, keyset: Keyset, limit: int, **exprs: sql.Composable) -> list[dict[str, Any]]:
    """Every page in turn, through the cursor each page hands out, as a client does."""
    query = sql.SQL(
        "SELECT *, {ended} AS ended_key FROM keyset_walk k WHERE {after} ORDER BY {order} LIMIT %(limit)s"
    ).format(ended=_ENDED, after=keyset.after("k", **exprs), order=keyset.order("k", **exprs))
    rows: list[dict[str, Any]] = []
    cursor = None
    for _ in range(20):
        page = keyset.page(db.fetch_all(query, keyset.params({"cursor": cursor, "limit": limit})), limit)
        rows += page["items"]
        cursor = page["next_cursor"]
        assert page["has_more"] == (cursor is not None)
        if cursor is None:
            return rows
    raise AssertionError("the walk did not end")


_ENDED = sql.SQL("COALESCE(k.ended_at, k.created_at)")


@pytest.mark.parametrize("limit", [1, 3, 4, 5, 13, 20])
def test_a_walk_over_tied_keys_returns_every_row_once_in_order(db: Database, limit: int) -> None:
    everything = db.fetch_all("SELECT * FROM keyset_walk ORDER BY created_at DESC, id DESC")
    assert [r["id"] for r in _walk(db, NEWEST, limit)] == [r["id"] for r in everything]

    by_tier = db.fetch_all("SELECT * FROM keyset_walk ORDER BY mode, sort_order, id")
    assert [r["id"] for r in _walk(db, TIERS, limit)] == [r["id"] for r in by_tier]

    serial = Keyset(("serial", "int"), descending=False)
    assert [r["serial"] for r in _walk(db, serial, limit)] == list(range(13))


@pytest.mark.parametrize("limit", [1, 2, 7])
def test_a_walk_by_an_expression_key(db: Database, limit: int) -> None:
    ended = Keyset(("ended_key", "time"), ("id", "uuid"))
    expected = db.fetch_all(sql.SQL("SELECT id FROM keyset_walk k ORDER BY {ended} DESC, id DESC").format(ended=_ENDED))
    walked = _walk(db, ended, limit, ended_key=_ENDED)
    assert [r["id"] for r in walked] == [r["id"] for r in expected]
    assert len({r["id"] for r in walked}) == 13


def test_first_without_a_limit_is_every_row(db: Database) -> None:
    query = sql.SQL("SELECT id FROM keyset_walk k WHERE {after} ORDER BY {order} LIMIT %(limit)s").format(
        after=NEWEST.after("k"), order=NEWEST.order("k")
    )
    assert len(db.fetch_all(query, NEWEST.first())) == 13
    assert len(db.fetch_all(query, NEWEST.first(2))) == 2
