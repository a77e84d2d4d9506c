"""The deadline job: a worker killed with SIGKILL mid-run and started again fires every due
deadline exactly once, and two workers side by side never fire one twice."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from lib.config.env import Settings
from lib.services import Services
from tests.conftest import PROJECT_ROOT
from tests.helpers import process_env

# Every change of ended_at is one firing of a session-end deadline: a second firing of the same
# deadline would show as a second row here, whatever the job's own guards.
_AUDIT = """
CREATE TABLE test_firings (session_id uuid NOT NULL, status text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE FUNCTION test_log_firing() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO test_firings (session_id, status) VALUES (NEW.id, NEW.status);
    RETURN NEW;
END $$;
CREATE TRIGGER test_firing AFTER UPDATE ON chat_sessions FOR EACH ROW
    WHEN (OLD.ended_at IS DISTINCT FROM NEW.ended_at OR OLD.completed_at IS DISTINCT FROM NEW.completed_at)
    EXECUTE FUNCTION test_log_firing();
"""


def _seed_due(services: Services, sessions: int) -> None:
    """`sessions` active sessions whose time ran out a second ago, each with its own customer."""
    services.db.execute(_AUDIT)
    services.db.execute(
        "WITH c AS (INSERT INTO customers (display_name) SELECT 'c' || g FROM generate_series(1, %(n)s) g RETURNING id), "
        "m AS (INSERT INTO mitras (phone, display_name) VALUES ('+6281299999999', 'Deadline') RETURNING id) "
        "INSERT INTO chat_sessions (customer_id, mitra_id, status, duration_minutes, started_at, expires_at) "
        "SELECT c.id, m.id, 'active', 15, now() - interval '15 minutes', now() - interval '1 second' FROM c, m",
        {"n": sessions},
    )


def _worker(settings: Settings) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runtime", "worker"],
        cwd=PROJECT_ROOT,
        env=process_env(settings, LOG_LEVEL="WARNING"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _closing(services: Services) -> int:
    row = services.db.fetch_one("SELECT count(*) AS n FROM chat_sessions WHERE status = 'closing'")
    return int(row["n"]) if row else 0


def _wait_all(services: Services, total: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _closing(services) < total and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _closing(services) == total


def _fired_once(services: Services, total: int) -> None:
    rows = services.db.fetch_all(
        "SELECT session_id, count(*) AS n FROM test_firings WHERE status = 'closing' GROUP BY session_id"
    )
    assert len(rows) == total
    assert {r["n"] for r in rows} == {1}


def test_sigkill_mid_run_loses_no_deadline_and_fires_none_twice(settings: Settings, services: Services) -> None:
    total = 6000
    _seed_due(services, total)
    first = _worker(settings)
    try:
        while _closing(services) == 0:
            assert first.poll() is None, first.communicate()[0]
            time.sleep(0.005)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    fired_before_restart = _closing(services)
    assert 0 < fired_before_restart < total, fired_before_restart  # it died in the middle
    second = _worker(settings)
    try:
        _wait_all(services, total)
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=30)
    _fired_once(services, total)


def test_two_workers_never_fire_one_deadline_twice(settings: Settings, services: Services) -> None:
    total = 4000
    _seed_due(services, total)
    workers = [_worker(settings), _worker(settings)]
    try:
        _wait_all(services, total)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.communicate(timeout=30)
    _fired_once(services, total)
    lateness = services.db.fetch_one(
        "SELECT max(f.at - s.expires_at) AS worst FROM test_firings f JOIN chat_sessions s ON s.id = f.session_id"
    )
    assert lateness is not None
    assert lateness["worst"].total_seconds() < 30  # sanity, not a benchmark
