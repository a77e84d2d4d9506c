"""The migration runner: numbered SQL files, one transaction each, an advisory lock, checksums."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

import migrations

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent
# Any fixed 64-bit key works, as long as nothing else in the database uses it.
LOCK_KEY = 0x4842_4D49_4752_4154  # "HBMIGRAT"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """The migrations on disk and in the database disagree; nothing further is applied."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lower_snake.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path.name}: version {version} is also used by {found[version].path.name}")
        found[version] = Migration(version, path.stem, path, path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def _applied(conn: psycopg.Connection[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    rows = conn.execute("SELECT version, name, checksum, applied_at FROM schema_migrations").fetchall()
    return {row["version"]: row for row in rows}


def _check(files: list[Migration], applied: dict[int, dict[str, Any]]) -> None:
    on_disk = {m.version: m for m in files}
    for version, row in sorted(applied.items()):
        m = on_disk.get(version)
        if m is None:
            raise MigrationError(f"{row['name']} is applied but its file is missing")
        if m.checksum != row["checksum"]:
            raise MigrationError(
                f"{m.path.name} was edited after it was applied (checksum differs); "
                "applied migrations are append-only: add a new file instead"
            )


def connect(dsn: str) -> psycopg.Connection[dict[str, Any]]:
    return psycopg.connect(
        dsn,
        autocommit=True,
        row_factory=dict_row,
        options="-c TimeZone=UTC",
        application_name="halobestie-migrate",
    )


def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every pending migration; returns the names applied. Safe to run from several replicas."""
    files = load(directory)
    with connect(dsn) as conn:
        conn.execute("SELECT pg_advisory_lock(%(lock_key)s)", {"lock_key": LOCK_KEY})
        try:
            conn.execute(_BOOTSTRAP)
            applied = _applied(conn)
            _check(files, applied)
            done: list[str] = []
            for m in files:
                if m.version in applied:
                    continue
                with conn.transaction():
                    conn.execute(m.sql.encode())  # bytes: no parameter parsing, so '%' in SQL is literal
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%(version)s, %(name)s, %(checksum)s)",
                        {"version": m.version, "name": m.name, "checksum": m.checksum},
                    )
                log.info("[migrate] applied %s", m.name)
                done.append(m.name)
            return done
        finally:
            conn.execute("SELECT pg_advisory_unlock(%(lock_key)s)", {"lock_key": LOCK_KEY})


def status(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[tuple[str, str]]:
    """(name, state) per migration: applied, pending, or edited/missing."""
    files = load(directory)
    with connect(dsn) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL AS e").fetchone()
        applied = _applied(conn) if exists and exists["e"] else {}
    rows: list[tuple[str, str]] = []
    on_disk = {m.version for m in files}
    for m in files:
        row = applied.get(m.version)
        if row is None:
            rows.append((m.name, "pending"))
        elif row["checksum"] != m.checksum:
            rows.append((m.name, "EDITED after apply"))
        else:
            rows.append((m.name, f"applied {row['applied_at']:%Y-%m-%d %H:%M:%S%z}"))
    rows.extend((row["name"], "MISSING file") for v, row in sorted(applied.items()) if v not in on_disk)
    return rows
