"""PostgreSQL access: a psycopg pool per process, opened lazily (so always after a fork)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import psycopg
from psycopg import sql as psql
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from lib.constraints import translate
from lib.errors import ServiceUnavailable, ValidationFailed
from lib.inputs import UNSTORABLE
from lib.metrics import m

log = logging.getLogger(__name__)

Conn = psycopg.Connection[dict[str, Any]]
Cursor = psycopg.Cursor[dict[str, Any]]
T = TypeVar("T")
IDLE_CHECK_SECONDS = 1.0  # a connection idle this long is checked before use (one round trip)
SUSPECT_SECONDS = 10.0  # after a connection failed, every checkout is checked for this long
_SERVER_GONE = frozenset({"57P01", "57P02", "57P03"})  # admin shutdown, crash shutdown, cannot connect now
# A literal statement, or one composed with psycopg.sql (identifiers, literal state lists).
Query = str | bytes | psql.SQL | psql.Composed
# What `_domain_error` turns into domain errors (PoolTimeout and TransactionRollback are OperationalErrors).
_DRIVER_ERRORS = (psycopg.IntegrityError, psycopg.DataError, psycopg.OperationalError, UnicodeEncodeError)


def _one(cursor: Cursor) -> dict[str, Any] | None:
    return cursor.fetchone()


def _all(cursor: Cursor) -> list[dict[str, Any]]:
    return cursor.fetchall()


def _rowcount(cursor: Cursor) -> int:
    return cursor.rowcount


def connect_kwargs(server_tz: str, application_name: str) -> dict[str, Any]:
    """Session settings pinned at connect time: no extra round trip, no way to forget them."""
    return {
        "options": f"-c TimeZone={server_tz} -c statement_timeout=15000",
        "application_name": application_name,
        "row_factory": dict_row,
        "connect_timeout": 3,
    }


class PooledConnection(Conn):
    """A connection of the pool. Between uses it is in autocommit, so a single statement is sent as
    it is (no BEGIN and COMMIT round trips, no switch); `Database.connection` turns that off for
    its transaction block. It keeps one cursor for single statements: a new cursor looks up the
    loader of every column again, ~15 us of a 31-column read (bench/profile.py). The cursor holds
    its last result until the connection's next statement; reads are paged, so that stays small."""

    good_at = 0.0  # when a statement last succeeded on it (monotonic)
    _cursor: Cursor | None = None

    def statement_cursor(self) -> Cursor:
        cursor = self._cursor
        if cursor is None or cursor.closed:
            cursor = self._cursor = self.cursor()
        return cursor


class Database:
    """A lazily opened connection pool. Construct anywhere; connections appear on first use."""

    def __init__(
        self,
        dsn: str,
        *,
        server_tz: str = "UTC",
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 3.0,
        application_name: str = "halobestie",
    ) -> None:
        self.dsn = dsn
        self.timeout = timeout
        self._kwargs = connect_kwargs(server_tz, application_name)
        # When a connection was last known good (PooledConnection.good_at): a restart or failover
        # breaks the idle ones silently, and the first statement on each then failed (3-4 of 12
        # reads were 503s after a healed cut). Those are checked before use and replaced; in a busy
        # process none is.
        self._last_ok = 0.0  # any connection's last success: a busy process checks nothing
        self._suspect_until = 0.0
        self._pool = ConnectionPool(
            dsn,
            connection_class=PooledConnection,
            min_size=min_size,
            max_size=max_size,
            kwargs={**self._kwargs, "autocommit": True},
            timeout=timeout,
            open=False,
            name=application_name,
            # A failed background reconnect gives up at once; the next request that finds the pool
            # short starts another. Recovery then follows demand: with the default (retries with
            # a growing backoff, new attempts held meanwhile) the first success after a 20 s
            # outage came 7.7 s after the database was back, with this 0.07 s.
            reconnect_timeout=0,
        )
        self._opened = False
        self._name = application_name
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def _alive(self, conn: PooledConnection) -> bool:
        """False for a connection found broken (the pool then discards it). The round trip is paid
        only for a connection idle for a while in a process that has had no success meanwhile (a
        restart breaks every connection at once), or while the process has just seen a connection
        fail. Not the pool's own `check`: it waits a growing backoff after each broken connection."""
        now = time.monotonic()
        idle = now - conn.good_at >= IDLE_CHECK_SECONDS and now - self._last_ok >= IDLE_CHECK_SECONDS
        if idle or now < self._suspect_until:
            try:
                ConnectionPool.check_connection(conn)
            except psycopg.Error:
                self._suspect_until = now + SUSPECT_SECONDS
                return False
        return True

    def _checkout(self, timeout: float | None) -> PooledConnection:
        """A working connection (getconn/putconn, not the pool's context manager: a request's one
        statement then pays for no transaction handling it does not use)."""
        self._ensure_open()
        for _ in range(self._pool.max_size + 1):  # every pooled one broken, then a fresh one
            conn = self._pool.getconn(timeout)
            if self._alive(conn):
                return conn
            self._pool.putconn(conn)  # closed by the failed check: the pool replaces it
        raise psycopg.OperationalError("no working database connection")

    def _succeeded(self, conn: PooledConnection) -> None:
        conn.good_at = self._last_ok = time.monotonic()

    def _ensure_open(self) -> None:
        if not self._opened:
            with self._lock:
                if not self._opened:
                    self._pool.open(wait=False)
                    self._opened = True
                    self._closed.clear()
                    threading.Thread(target=self._sample_pool, name="pool-metrics", daemon=True).start()

    def _sample_pool(self, every: float = 5.0) -> None:
        """The pool's size, idle and waiting gauges, while it is open (in the process using it)."""
        gauge = m().db_pool
        while True:
            stats = self._pool.get_stats()
            gauge.labels("size").set(stats.get("pool_size", 0))
            gauge.labels("idle").set(stats.get("pool_available", 0))
            gauge.labels("waiting").set(stats.get("requests_waiting", 0))
            if self._closed.wait(every):
                return

    def _domain_error(self, exc: Exception) -> Exception:
        """The boundary where driver errors become domain errors: a constraint violation or a value
        the column cannot hold leaves as the 4xx that lib/constraints.py names for it."""
        if isinstance(exc, (psycopg.IntegrityError, psycopg.DataError)):
            return translate(exc)
        if isinstance(exc, UnicodeEncodeError):  # a lone surrogate psycopg cannot send: input lib/inputs did not see
            log.warning("unencodable text reached the database boundary")
            return ValidationFailed({"_schema": [UNSTORABLE]})
        if isinstance(exc, PoolTimeout):
            m().db_pool_timeouts.labels(self._name).inc()
            log.error("database pool timeout: %s", exc)
            return ServiceUnavailable("Database unavailable", retry_after=2)
        if isinstance(exc, psycopg.errors.TransactionRollback):  # deadlock, serialization: the server is fine
            log.warning("database transaction rolled back: %s", exc.sqlstate)
            return ServiceUnavailable("Busy, try again", retry_after=1)
        assert isinstance(exc, psycopg.OperationalError)
        log.error("database error: %s", exc)
        if exc.sqlstate is None or exc.sqlstate.startswith("08") or exc.sqlstate in _SERVER_GONE:
            # The connection, not the statement, failed: the pool's others may be broken too.
            self._suspect_until = time.monotonic() + SUSPECT_SECONDS
        return ServiceUnavailable("Database unavailable", retry_after=2)

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[Conn]:
        """A pooled connection; the block is one transaction (committed on success, rolled back on
        an error). Driver errors leave it as domain errors (`_domain_error`)."""
        try:
            conn = self._checkout(timeout)
            try:
                conn.autocommit = False
                with conn:  # psycopg's connection block: commit, or roll back on an exception
                    yield conn
                self._succeeded(conn)
            finally:
                try:
                    if conn.closed or conn.info.transaction_status != TransactionStatus.IDLE:
                        conn.close()  # never hand on a connection still in a transaction: the pool replaces it
                    else:
                        conn.autocommit = True
                finally:
                    self._pool.putconn(conn)
        except _DRIVER_ERRORS as exc:
            raise self._domain_error(exc) from exc

    def _run(self, sql: Query, params: dict[str, Any] | None, read: Callable[[Cursor], T]) -> T:
        """One statement on the connection's own cursor, in autocommit (a statement is atomic on
        its own), read before the connection goes back to the pool."""
        try:
            conn = self._checkout(None)
            try:
                result = read(conn.statement_cursor().execute(sql, params))
                self._succeeded(conn)
                return result
            finally:
                self._pool.putconn(conn)
        except _DRIVER_ERRORS as exc:
            raise self._domain_error(exc) from exc

    def dedicated(self, purpose: str) -> Conn:
        """A connection of its own, outside the pool and in autocommit, for a thread that holds it
        for long (a LISTEN); named `<application>-<purpose>` in pg_stat_activity."""
        kwargs = {**self._kwargs, "application_name": f"{self._name}-{purpose}"}
        return cast(Conn, psycopg.connect(self.dsn, autocommit=True, **kwargs))

    def fetch_one(self, sql: Query, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        return self._run(sql, params, _one)

    def fetch_all(self, sql: Query, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._run(sql, params, _all)

    def execute(self, sql: Query, params: dict[str, Any] | None = None) -> int:
        return self._run(sql, params, _rowcount)

    def close(self) -> None:
        with self._lock:
            if self._opened:
                self._closed.set()
                self._pool.close()
                self._opened = False


def contains(text: str | None) -> str | None:
    """A LIKE pattern matching `text` anywhere, its own % and _ taken literally (None for None)."""
    if not text:
        return None
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
