"""PostgreSQL access: a psycopg pool per process, opened lazily (so always after a fork)."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, NamedTuple, TypeVar, cast

import psycopg
from psycopg import pq
from psycopg import sql as psql
from psycopg.abc import Buffer
from psycopg.abc import Transformer as Loading
from psycopg.adapt import Transformer
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


def _always(_: object) -> bool:
    return True


def _ran(rows: list[dict[str, Any]] | None) -> bool:
    return rows is not None  # None: PooledConnection.read left it to psycopg


def connect_kwargs(server_tz: str, application_name: str) -> dict[str, Any]:
    """Session settings pinned at connect time: no extra round trip, no way to forget them."""
    return {
        "options": f"-c TimeZone={server_tz} -c statement_timeout=15000",
        "application_name": application_name,
        "row_factory": dict_row,
        "connect_timeout": 3,
        "client_encoding": "UTF8",  # PooledConnection.read sends text as UTF-8
    }


class Plan(NamedTuple):
    """A read as libpq takes it: `$n` placeholders, and the parameter names in their order."""

    text: bytes
    names: tuple[str, ...]


_PLACEHOLDER = re.compile(rb"%\((\w+)\)s|%%|%")
PREPARED_PER_CONNECTION = 200  # reads a connection prepares itself; later ones go through psycopg


@lru_cache(maxsize=1024)
def read_plan(statement: str | bytes) -> Plan | None:
    """A SELECT's named placeholders (`%(name)s`) as libpq's `$n`, converted as psycopg converts
    them; None for any other statement (a write's errors need psycopg's diagnostics: the constraint
    names lib/constraints.py maps) or any other use of `%` (`%s`, `%b`, `%t`)."""
    try:
        text = statement.encode() if isinstance(statement, str) else statement
    except UnicodeEncodeError:
        return None  # psycopg's execute refuses it
    if text.lstrip()[:7].upper() not in (b"SELECT ", b"SELECT\n"):
        return None
    names: list[str] = []
    unusable = False

    def number(match: re.Match[bytes]) -> bytes:
        nonlocal unusable
        if match.group(0) == b"%%":
            return b"%"
        if match.group(1) is None:
            unusable = True
            return b""
        name = match.group(1).decode()
        if name not in names:
            names.append(name)
        return b"$%d" % (names.index(name) + 1)

    text = _PLACEHOLDER.sub(number, text)
    return None if unusable else Plan(text, tuple(names))


_MISSING = object()


class _Prepared(NamedTuple):
    name: bytes
    columns: tuple[str, ...] | None  # known after its first result


_GONE = b"26000"  # "prepared statement does not exist": psycopg's DEALLOCATE ALL after a rollback, a DISCARD
_STALE = b"0A000"  # "cached plan must not change result type": a column added under `SELECT *`


def _failure(pgconn: pq.abc.PGconn, result: pq.abc.PGresult) -> psycopg.Error:
    """What psycopg's cursor raises for this result: the class of its SQLSTATE (`errors.lookup`)
    with the server's message (not the diagnostics fields: no read needs them), or an
    OperationalError when the connection, not the statement, failed."""
    message = (result.error_message or b"").decode("utf-8", "replace").strip()
    if pgconn.status != pq.ConnStatus.OK:
        return psycopg.OperationalError(message or "the connection to the server was lost")
    if result.status == pq.ExecStatus.COMMAND_OK:  # SELECT ... INTO: ran, made a table, no rows
        return psycopg.ProgrammingError("the statement returned no rows")
    state = (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode("ascii", "replace")
    try:
        return psycopg.errors.lookup(state)(message)
    except KeyError:
        return psycopg.DatabaseError(message)


class PooledConnection(Conn):
    """A connection of the pool. Between uses it is in autocommit, so a single statement is sent as
    it is (no BEGIN and COMMIT round trips, no switch); `Database.connection` turns that off for
    its transaction block. It keeps one cursor for single statements: a new cursor looks up the
    loader of every column again, ~15 us of a 31-column read (bench/profile.py). The cursor holds
    its last result until the connection's next statement; reads are paged, so that stays small."""

    good_at = 0.0  # when a statement last succeeded on it (monotonic)
    _cursor: Cursor | None = None
    _reads_loader: Loading | None = None
    _reads: dict[bytes, _Prepared] | None = None  # not _prepared: psycopg's own PrepareManager
    _reads_named = 0

    def statement_cursor(self) -> Cursor:
        cursor = self._cursor
        if cursor is None or cursor.closed:
            cursor = self._cursor = self.cursor()
        return cursor

    def read(self, statement: Plan, values: Sequence[bytes | None], first: bool) -> list[dict[str, Any]] | None:
        """The rows (the first only, if `first`) of a SELECT prepared on this connection and run
        through libpq directly, loaded by psycopg's own loaders (public: `PGconn`, `Transformer`):
        half of psycopg's execute is its Python around libpq (58 against 27 us a statement,
        docs/db_reads.md). None when this connection has prepared its share (psycopg's execute
        runs it then). A failure raises what psycopg's would; a statement the server no longer
        has, or whose columns changed, is prepared again and sent once more."""
        reads = self._reads
        if reads is None:
            reads = self._reads = {}
            self._reads_loader = Transformer(self)
        known = reads.get(statement.text)
        if known is None:
            if len(reads) >= PREPARED_PER_CONNECTION:
                return None
            known = self._prepare(statement)
        # libpq sends a None as NULL (the stubs say Buffer only)
        result = self.pgconn.exec_prepared(known.name, cast(Sequence[Buffer], values))
        if result.status == pq.ExecStatus.FATAL_ERROR and self.pgconn.status == pq.ConnStatus.OK:
            state = result.error_field(pq.DiagnosticField.SQLSTATE)
            if state == _GONE:
                reads.clear()  # DEALLOCATE ALL took every one of them
            elif state == _STALE:
                del reads[statement.text]
                self.pgconn.exec_(b"DEALLOCATE " + known.name)
            if state in (_GONE, _STALE):
                known = self._prepare(statement)
                result = self.pgconn.exec_prepared(known.name, cast(Sequence[Buffer], values))
        if result.status != pq.ExecStatus.TUPLES_OK:
            raise _failure(self.pgconn, result)
        columns = known.columns
        if columns is None:
            columns = tuple((result.fname(i) or b"").decode() for i in range(result.nfields))
            reads[statement.text] = known._replace(columns=columns)
        loader = self._reads_loader
        assert loader is not None
        loader.set_pgresult(result)
        wanted = min(result.ntuples, 1) if first else result.ntuples
        return loader.load_rows(0, wanted, lambda row: dict(zip(columns, row, strict=True)))

    def _prepare(self, statement: Plan) -> _Prepared:
        assert self._reads is not None
        self._reads_named += 1
        known = _Prepared(b"hb_read_%d" % self._reads_named, None)
        result = self.pgconn.prepare(known.name, statement.text)
        if result.status != pq.ExecStatus.COMMAND_OK:
            raise _failure(self.pgconn, result)
        self._reads[statement.text] = known
        return known


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

    def _pooled(self, work: Callable[[PooledConnection], T], done: Callable[[T], bool]) -> T:
        """`work` on a connection of the pool, in autocommit (a statement is atomic on its own),
        finished before the connection goes back; `done` says whether it proved the connection."""
        try:
            conn = self._checkout(None)
            try:
                result = work(conn)
                if done(result):
                    self._succeeded(conn)
                return result
            finally:
                self._pool.putconn(conn)
        except _DRIVER_ERRORS as exc:
            raise self._domain_error(exc) from exc

    def _run(self, sql: Query, params: dict[str, Any] | None, read: Callable[[Cursor], T]) -> T:
        """One statement on the connection's own cursor, read before the connection goes back."""
        return self._pooled(lambda conn: read(conn.statement_cursor().execute(sql, params)), _always)

    def dedicated(self, purpose: str) -> Conn:
        """A connection of its own, outside the pool and in autocommit, for a thread that holds it
        for long (a LISTEN); named `<application>-<purpose>` in pg_stat_activity."""
        kwargs = {**self._kwargs, "application_name": f"{self._name}-{purpose}"}
        return cast(Conn, psycopg.connect(self.dsn, autocommit=True, **kwargs))

    def _read(self, sql: Query, params: dict[str, Any] | None, first: bool) -> list[dict[str, Any]] | None:
        """The rows of a SELECT written as text whose values are text or NULL, through
        `PooledConnection.read`; None for any other (psycopg's execute then runs it). Without
        values psycopg sends the text as it is (`%%` stays two), so that goes through it too."""
        if params is None or not isinstance(sql, (str, bytes)):
            return None
        statement = read_plan(sql)
        if statement is None:
            return None
        values: list[bytes | None] = []
        for name in statement.names:
            value = params.get(name, _MISSING)
            if value is None:
                values.append(None)
            elif type(value) is str and "\x00" not in value:  # libpq would cut a text at a NUL
                try:
                    values.append(value.encode())
                except UnicodeEncodeError:
                    return None
            else:
                return None  # a missing name, a number, a list...: psycopg types and checks them
        return self._pooled(lambda conn: conn.read(statement, values, first), _ran)

    def fetch_one(self, sql: Query, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        rows = self._read(sql, params, first=True)
        if rows is None:
            return self._run(sql, params, _one)
        return rows[0] if rows else None

    def fetch_all(self, sql: Query, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        rows = self._read(sql, params, first=False)
        return rows if rows is not None else self._run(sql, params, _all)

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
