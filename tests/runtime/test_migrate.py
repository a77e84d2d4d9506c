"""The migration runner: applies all to an empty database, idempotent, checksums, advisory lock."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from runtime import migrate
from tests.conftest import PROJECT_ROOT


def _versions(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


def test_all_migrations_apply_to_an_empty_database(empty_database_url: str) -> None:
    applied = migrate.migrate(empty_database_url)
    assert applied == [m.name for m in migrate.load()]
    assert _versions(empty_database_url) == [m.version for m in migrate.load()]
    with psycopg.connect(empty_database_url) as conn:
        keys = {r[0] for r in conn.execute("SELECT key FROM app_config")}
    assert {
        "max_customers_per_mitra",
        "mitra_stale_after_seconds",
        "support_handles_json",
        "otp_bypass_enabled",
        "payment_request_timeout_minutes",
    } <= keys


def test_rerun_is_a_noop(empty_database_url: str) -> None:
    migrate.migrate(empty_database_url)
    assert migrate.migrate(empty_database_url) == []


def test_app_config_defaults_match_domain(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        values: dict[str, object] = dict(conn.execute("SELECT key, value FROM app_config").fetchall())
    assert values["max_customers_per_mitra"] == 3
    assert values["mitra_stale_after_seconds"] == 45
    assert values["require_ping"] is True
    assert values["extension_default_action_on_timeout"] == "auto_approve"
    assert values["support_handles_json"] == {}
    assert values["otp_ttl_seconds"] == 300
    assert values["cc_lockout_threshold"] == 5


@pytest.fixture
def mig_dir(tmp_path: Path) -> Path:
    d = tmp_path / "migrations"
    d.mkdir()
    (d / "0001_one.sql").write_text("CREATE TABLE one (id int PRIMARY KEY);\nINSERT INTO one VALUES (1);\n")
    (d / "0002_two.sql").write_text("CREATE TABLE two (id int); -- 100% literal percent sign\n")
    return d


def test_edited_applied_file_is_refused(empty_database_url: str, mig_dir: Path) -> None:
    migrate.migrate(empty_database_url, mig_dir)
    (mig_dir / "0001_one.sql").write_text("CREATE TABLE one (id bigint PRIMARY KEY);\n")
    (mig_dir / "0003_three.sql").write_text("CREATE TABLE three (id int);\n")
    with pytest.raises(migrate.MigrationError, match=r"0001_one\.sql was edited"):
        migrate.migrate(empty_database_url, mig_dir)
    assert _versions(empty_database_url) == [1, 2]  # nothing further applied
    states = dict(migrate.status(empty_database_url, mig_dir))
    assert states["0001_one"] == "EDITED after apply"
    assert states["0003_three"] == "pending"


def test_failing_file_rolls_back_alone(empty_database_url: str, mig_dir: Path) -> None:
    (mig_dir / "0003_bad.sql").write_text("CREATE TABLE three (id int);\nSELECT * FROM no_such_table;\n")
    with pytest.raises(psycopg.errors.UndefinedTable):
        migrate.migrate(empty_database_url, mig_dir)
    assert _versions(empty_database_url) == [1, 2]
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT to_regclass('three')").fetchone() == (None,)


def test_bad_file_names_are_refused(empty_database_url: str, mig_dir: Path) -> None:
    (mig_dir / "3_Three.sql").write_text("SELECT 1;")
    with pytest.raises(migrate.MigrationError, match="NNNN_lower_snake"):
        migrate.migrate(empty_database_url, mig_dir)
    (mig_dir / "3_Three.sql").unlink()
    (mig_dir / "0002_again.sql").write_text("SELECT 1;")
    with pytest.raises(migrate.MigrationError, match="version 2 is also used"):
        migrate.migrate(empty_database_url, mig_dir)


def test_missing_applied_file_is_refused(empty_database_url: str, mig_dir: Path) -> None:
    migrate.migrate(empty_database_url, mig_dir)
    (mig_dir / "0002_two.sql").unlink()
    with pytest.raises(migrate.MigrationError, match="file is missing"):
        migrate.migrate(empty_database_url, mig_dir)


def test_concurrent_runners_do_not_race(empty_database_url: str, mig_dir: Path) -> None:
    # A slow first file keeps the race window open; without the lock both runners would apply it.
    (mig_dir / "0001_one.sql").write_text("SELECT pg_sleep(0.5);\nCREATE TABLE one (id int PRIMARY KEY);\n")
    results: list[list[str]] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate.migrate(empty_database_url, mig_dir))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert failures == []
    assert sorted(results, key=len) == [[], [], [], ["0001_one", "0002_two"]]
    assert _versions(empty_database_url) == [1, 2]


def test_status_lists_pending_then_applied(empty_database_url: str, mig_dir: Path) -> None:
    assert migrate.status(empty_database_url, mig_dir) == [("0001_one", "pending"), ("0002_two", "pending")]
    migrate.migrate(empty_database_url, mig_dir)
    assert all(state.startswith("applied ") for _, state in migrate.status(empty_database_url, mig_dir))


def test_cli_migrate_and_status(empty_database_url: str) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": empty_database_url,
        "LOG_FORMAT": "text",
        "ADMIN_EMAIL": "root@example.org",
        "ADMIN_PASSWORD": "a-long-enough-password",
    }
    run = subprocess.run(
        [sys.executable, "-m", "runtime", "migrate"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert f"{len(migrate.load())} migration(s) applied" in run.stdout
    assert "seeded admin root@example.org" in run.stdout
    assert "a-long-enough-password" not in run.stdout + run.stderr
    status = subprocess.run(
        [sys.executable, "-m", "runtime", "migrate", "status"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0
    assert all(" applied " in line for line in status.stdout.strip().splitlines())
    again = subprocess.run(
        [sys.executable, "-m", "runtime", "migrate"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "0 migration(s) applied" in again.stdout
    assert "seeded admin" not in again.stdout


def test_project_migrations_are_well_formed() -> None:
    assert migrate.MIGRATIONS_DIR == PROJECT_ROOT / "migrations"
    files = migrate.load()
    assert [m.version for m in files] == list(range(1, len(files) + 1))  # no gaps, append-only
