"""The pool after a database restart or failover: connections it broke are replaced, not handed out."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from lib.db import IDLE_CHECK_SECONDS, Database
from lib.errors import ServiceUnavailable

NAME = "halobestie-dbtest"


def _terminate(dsn: str) -> int:
    """What a restart does to every open connection of the pool: the server ends each backend."""
    with psycopg.connect(dsn, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (NAME,)
        ).fetchall()
    return len(rows)


def _warm(db: Database, n: int) -> None:
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(lambda _: db.fetch_one("SELECT pg_sleep(0.05)"), range(n)))


@pytest.fixture
def db(database_url: str):
    database = Database(database_url, min_size=4, max_size=4, application_name=NAME)
    yield database
    database.close()


def test_connections_broken_while_idle_are_replaced_before_use(db: Database, database_url: str) -> None:
    _warm(db, 4)
    assert _terminate(database_url) == 4
    time.sleep(IDLE_CHECK_SECONDS + 0.2)
    assert [db.fetch_one("SELECT 1 AS one") for _ in range(12)] == [{"one": 1}] * 12


def test_after_one_failure_every_checkout_is_checked(db: Database, database_url: str) -> None:
    _warm(db, 4)
    assert _terminate(database_url) == 4
    # Busy connections are not checked (that would cost a round trip per request): the first use
    # of a broken one may fail, once; it tells the pool to check the others before they are used.
    failures = 0
    for _ in range(12):
        try:
            db.fetch_one("SELECT 1")
        except ServiceUnavailable:
            failures += 1
    assert failures <= 1
