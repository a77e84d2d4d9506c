"""The pool: connections a database restart or failover broke are replaced, not handed out; single
statements run in autocommit and transaction blocks do not leak into them."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

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


class _Cut:
    """A loopback TCP proxy to the database that can be cut (every connection reset, new ones
    refused: a network partition or a server that is down) and healed."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.up = True
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            if not self.up:
                client.close()
                continue
            server = self._connect()
            self.open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _connect(self) -> socket.socket:
        host, port = self.target
        if host.startswith("/"):  # a socket directory: the embedded server listens on no TCP port
            server = socket.socket(socket.AF_UNIX)
            server.connect(f"{host}/.s.PGSQL.{port}")
            return server
        return socket.create_connection(self.target)

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.up = False
        for s in self.open:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.open = []


def test_after_a_long_outage_the_first_request_succeeds_as_soon_as_the_database_is_back(database_url: str) -> None:
    params = conninfo_to_dict(database_url)
    proxy = _Cut(str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))
    db = Database(
        make_conninfo(database_url, host="127.0.0.1", port=str(proxy.port)),
        min_size=1,
        max_size=4,
        timeout=1.0,
        application_name=NAME,
    )
    try:
        db.fetch_one("SELECT 1")
        proxy.cut()
        down_until = time.monotonic() + 12  # long enough for a reconnect backoff to grow
        while time.monotonic() < down_until:
            with pytest.raises(ServiceUnavailable):
                db.fetch_one("SELECT 1")
            time.sleep(0.2)
        proxy.up = True
        healed = time.monotonic()
        while True:
            try:
                db.fetch_one("SELECT 1")
                break
            except ServiceUnavailable:
                time.sleep(0.1)
        # A reconnect held behind a backoff took 7.7 s after a 20 s outage; demand takes one try.
        assert time.monotonic() - healed < 3
    finally:
        db.close()


def test_a_statement_that_fails_on_its_own_does_not_put_the_pool_under_suspicion(db: Database) -> None:
    def too_slow() -> None:
        with db.connection() as conn:
            conn.execute("SET LOCAL statement_timeout = 10")
            conn.execute("SELECT pg_sleep(1)")

    with pytest.raises(ServiceUnavailable):
        too_slow()
    assert db._suspect_until == 0.0


def test_a_process_in_use_pays_no_liveness_round_trip(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from psycopg_pool import ConnectionPool

    checks: list[object] = []
    real = ConnectionPool.check_connection
    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(lambda conn: checks.append(real(conn))))
    _warm(db, 4)
    checks.clear()
    for _ in range(15):  # 5 requests a second: each of the 4 connections idles ~0.8 s between uses
        db.fetch_one("SELECT 1")
        time.sleep(0.2)
    assert checks == []


def _seen(dsn: str) -> list[int]:
    """The rows of dbtest as a connection outside the pool sees them: committed ones only."""
    with psycopg.connect(dsn) as other:
        return [n for (n,) in other.execute("SELECT n FROM dbtest ORDER BY n").fetchall()]


def test_a_statement_after_a_transaction_block_is_committed_on_its_own(db: Database, database_url: str) -> None:
    db.execute("CREATE TABLE dbtest (n int)")
    gate = threading.Barrier(4)

    def block(_: int) -> None:
        with db.connection() as conn:
            conn.execute("SELECT 1")
            gate.wait(5)  # four blocks at once: every pooled connection has had one

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(block, range(4)))
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: db.execute("INSERT INTO dbtest VALUES (%(n)s)", {"n": n}), range(8)))
    # A connection handed back still out of autocommit would hold these in an open transaction.
    assert _seen(database_url) == list(range(8))


def test_a_block_that_raises_is_rolled_back_and_its_connection_is_clean(db: Database, database_url: str) -> None:
    db.execute("CREATE TABLE dbtest (n int)")

    def failing() -> None:
        with db.connection() as conn:
            conn.execute("INSERT INTO dbtest VALUES (1)")
            raise RuntimeError("the handler failed")

    with pytest.raises(RuntimeError):
        failing()
    with db.connection() as conn:
        conn.execute("INSERT INTO dbtest VALUES (2)")
        assert _seen(database_url) == []  # a block is one transaction: not visible before its end
    for _ in range(4):
        db.execute("INSERT INTO dbtest VALUES (3)")
    assert _seen(database_url) == [2, 3, 3, 3, 3]


def test_a_statement_is_read_before_its_connection_goes_back_to_the_pool(database_url: str) -> None:
    # Each connection keeps one cursor for single statements: a result read after the connection
    # went back could be another thread's. Here the pool (of one) serves a statement the moment it
    # gets the connection back, as a busy process would.
    db = Database(database_url, min_size=1, max_size=1, application_name=NAME)
    putconn = db._pool.putconn
    busy = threading.local()

    def put_and_reuse(conn: Any) -> None:
        putconn(conn)
        if not getattr(busy, "on", False):
            busy.on = True
            try:
                db.fetch_one("SELECT 'another thread' AS who")
            finally:
                busy.on = False

    db._pool.putconn = put_and_reuse  # type: ignore[method-assign]
    try:
        assert db.fetch_one("SELECT 'mine' AS who") == {"who": "mine"}
        assert db.fetch_all("SELECT 'mine' AS who") == [{"who": "mine"}]
    finally:
        db.close()


# Reads (a SELECT whose values are text or NULL) are prepared on each connection and run through
# libpq directly (PooledConnection.read); everything else, and every failure, through psycopg.

PREPARED = "SELECT statement FROM pg_prepared_statements WHERE name LIKE 'hb_read_%%' ORDER BY prepare_time"
TYPES = (
    b"SELECT %(id)s::uuid AS id, '2026-12-07 19:47:27.912+07'::timestamptz AS at, '2026-12-07'::date AS day, "
    b"12 AS small, (2^40)::bigint AS big, 1.50::numeric AS price, 0.25::float8 AS ratio, true AS yes, "
    b"NULL::text AS nothing, %(none)s::text AS null_param, '{\"a\": [1, null]}'::jsonb AS doc, "
    b"ARRAY['x', 'y'] AS list, ARRAY[]::uuid[] AS empty, interval '90 s' AS span, %(text)s AS text, "
    b"'100%%' AS percent, %(text)s || %(text)s AS twice"
)


@pytest.fixture
def one(database_url: str):
    """A pool of one connection: what one statement prepared is what the next one sees."""
    database = Database(database_url, min_size=1, max_size=1, application_name=NAME)
    yield database
    database.close()


def test_a_read_is_prepared_once_on_its_connection_with_libpq_placeholders(one: Database) -> None:
    for who in ("a", "b", "c"):
        assert one.fetch_one(b"SELECT %(who)s AS who, %(who)s || %(tail)s AS again", {"who": who, "tail": "!"}) == {
            "who": who,
            "again": who + "!",
        }
    assert one.fetch_all(PREPARED) == [{"statement": "SELECT $1 AS who, $1 || $2 AS again"}]


def test_a_read_through_libpq_loads_every_type_as_psycopg_does(one: Database, database_url: str) -> None:
    from psycopg.rows import dict_row

    from lib.db import connect_kwargs

    params = {"id": "0b9f7c1e-63d4-4a36-9a64-3a8d4a0d6c11", "none": None, "text": "Ünï 'kutip' \\ ✓ \U0001f600"}
    with psycopg.connect(database_url, **{**connect_kwargs("UTC", NAME), "row_factory": dict_row}) as direct:
        expected = direct.execute(TYPES, params).fetchone()
    assert one.fetch_one(TYPES, params) == expected
    assert one.fetch_all(TYPES, params) == [expected]
    assert one.fetch_all(PREPARED)[0]["statement"].startswith("SELECT $1::uuid AS id")


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT %(x)s::text AS x",  # str: a SELECT written as text
        b"  SELECT %(x)s::text AS x",  # bytes, leading space
    ],
)
def test_text_postgresql_cannot_store_is_refused_not_cut(one: Database, statement: str | bytes) -> None:
    from lib.errors import ValidationFailed

    # libpq takes a parameter as a C string: a NUL would end it, and "a\x00b" would be read as "a".
    with pytest.raises(ValidationFailed):
        one.fetch_one(statement, {"x": "a\x00b"})
    with pytest.raises(ValidationFailed):
        one.fetch_one(statement, {"x": "a\ud800b"})
    assert one.fetch_one(statement, {"x": "ab"}) == {"x": "ab"}
    if isinstance(statement, str):
        with pytest.raises(ValidationFailed):  # in the statement itself: psycopg refuses it too
            one.fetch_one(statement + " WHERE %(x)s <> '\ud800'", {"x": "ab"})


@pytest.fixture
def sent_through_psycopg(one: Database, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The statements `one` sends through psycopg's cursor (Database._run)."""
    sent: list[object] = []
    run = one._run

    def spy(sql: Any, params: Any, read: Any) -> Any:
        sent.append(sql)
        return run(sql, params, read)

    monkeypatch.setattr(one, "_run", spy)
    return sent


def test_a_failed_read_raises_what_psycopg_raises_and_is_sent_once(
    one: Database, database_url: str, sent_through_psycopg: list[object]
) -> None:
    from lib.errors import ValidationFailed

    with pytest.raises(ValidationFailed):  # the value the column cannot hold: a DataError, translated
        one.fetch_one("SELECT %(id)s::uuid AS id", {"id": "not-a-uuid"})
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("CREATE SEQUENCE reads_sent")
        with pytest.raises(ValidationFailed):  # division by zero, after nextval ran
            one.fetch_one("SELECT nextval('reads_sent') AS n, 1 / (length(%(x)s) - 1) AS d", {"x": "a"})
        assert admin.execute("SELECT last_value FROM reads_sent").fetchone() == (1,)
    assert one.fetch_one("SELECT %(id)s::uuid::text AS id", {"id": "0b9f7c1e-63d4-4a36-9a64-3a8d4a0d6c11"})
    assert sent_through_psycopg == []
    assert one._suspect_until == 0.0


def test_reads_are_prepared_again_after_psycopg_deallocated_everything(
    one: Database, sent_through_psycopg: list[object]
) -> None:
    from lib.errors import Conflict

    assert one.fetch_one("SELECT %(x)s AS x", {"x": "a"}) == {"x": "a"}
    for _ in range(6):  # psycopg prepares a statement of its own after 5 runs
        one.execute("SELECT %(n)s::int", {"n": 1})

    def failing_request() -> None:
        with one.connection() as conn:  # a request that fails in its transaction: rolled back
            conn.execute("SELECT 1")
            raise Conflict()

    with pytest.raises(Conflict):
        failing_request()
    with one.connection() as conn:  # psycopg's rollback sent DEALLOCATE ALL: ours went too
        assert conn.execute(PREPARED).fetchall() == []
    sent_through_psycopg.clear()
    assert one.fetch_one("SELECT %(x)s AS x", {"x": "b"}) == {"x": "b"}
    assert one.fetch_all(PREPARED) == [{"statement": "SELECT $1 AS x"}]
    assert sent_through_psycopg == [PREPARED]


def test_a_read_waiting_on_a_lock_past_the_timeout_is_sent_once(
    one: Database, database_url: str, sent_through_psycopg: list[object]
) -> None:
    with one.connection() as conn:
        conn.execute("SET statement_timeout = 300")  # the session's, kept after this block commits
    with psycopg.connect(database_url) as admin:
        admin.execute("CREATE TABLE reads_locked (a int)")
        admin.commit()
        admin.execute("LOCK TABLE reads_locked IN ACCESS EXCLUSIVE MODE")  # a migration's ALTER TABLE
        with pytest.raises(ServiceUnavailable):  # the PREPARE waits on the lock
            one.fetch_all("SELECT * FROM reads_locked WHERE %(x)s = 'x'", {"x": "x"})
        admin.rollback()
    assert sent_through_psycopg == []
    assert one.fetch_all("SELECT * FROM reads_locked WHERE %(x)s = 'x'", {"x": "x"}) == []


def test_a_read_whose_columns_changed_is_prepared_again(one: Database, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("CREATE TABLE reads_probe (a int)")
        admin.execute("INSERT INTO reads_probe VALUES (1)")
        assert one.fetch_all("SELECT * FROM reads_probe WHERE %(x)s = 'x'", {"x": "x"}) == [{"a": 1}]
        admin.execute("ALTER TABLE reads_probe ADD COLUMN b text DEFAULT 'b'")
        for _ in range(3):  # "cached plan must not change result type" once, then a fresh statement
            assert one.fetch_all("SELECT * FROM reads_probe WHERE %(x)s = 'x'", {"x": "x"}) == [{"a": 1, "b": "b"}]
    statements = [r["statement"] for r in one.fetch_all(PREPARED)]
    assert statements.count("SELECT * FROM reads_probe WHERE $1 = 'x'") == 1


def test_a_read_that_times_out_is_sent_once(one: Database, database_url: str) -> None:
    with one.connection() as conn:
        conn.execute("SET statement_timeout = 200")  # the session's, kept after this block commits
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("CREATE SEQUENCE reads_sent")
        with pytest.raises(ServiceUnavailable):
            one.fetch_one("SELECT nextval('reads_sent') AS n, pg_sleep(%(s)s::float8) AS slept", {"s": "2"})
        assert admin.execute("SELECT last_value FROM reads_sent").fetchone() == (1,)
    assert one._suspect_until == 0.0


def test_reads_past_a_connections_share_go_through_psycopg(one: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    import lib.db

    monkeypatch.setattr(lib.db, "PREPARED_PER_CONNECTION", 1)
    assert one.fetch_one("SELECT %(x)s AS x", {"x": "y"}) == {"x": "y"}
    assert one.fetch_one("SELECT %(x)s AS z", {"x": "y"}) == {"z": "y"}
    assert one.fetch_all(PREPARED) == [{"statement": "SELECT $1 AS x"}]


@pytest.mark.parametrize(
    ("statement", "params"),
    [
        ("SELECT %s::text AS x", ("y",)),  # positional: psycopg's own syntax
        ("SELECT %(x)s::int AS x", {"x": 7}),  # a number: psycopg types it
        ("WITH v AS (SELECT %(x)s::text AS x) SELECT x FROM v", {"x": "y"}),  # not a plain SELECT
        ("SELECT '100%%' AS x", None),  # no values: psycopg sends the text as it is, %% and all
    ],
)
def test_other_statements_and_values_go_through_psycopg(
    one: Database, database_url: str, statement: str, params: Any
) -> None:
    with psycopg.connect(database_url) as direct:
        expected = direct.execute(statement, params).fetchone()
    assert one.fetch_one(statement, params) == {"x": expected[0] if expected else None}
    assert one.fetch_all(PREPARED) == []


def test_a_read_on_a_connection_the_server_ended_is_a_503_and_puts_the_pool_under_suspicion(
    one: Database, database_url: str
) -> None:
    assert one.fetch_one("SELECT %(x)s AS x", {"x": "y"}) == {"x": "y"}
    assert _terminate(database_url) == 1
    with pytest.raises(ServiceUnavailable):
        one.fetch_one("SELECT %(x)s AS x", {"x": "y"})
    assert one._suspect_until > 0
    assert one.fetch_one("SELECT %(x)s AS x", {"x": "y"}) == {"x": "y"}  # on a fresh connection
