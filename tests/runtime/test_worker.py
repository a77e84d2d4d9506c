"""The worker: job discovery, one replica per tick, jobs at start, clean SIGTERM."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace

import pytest

from lib.config.env import Settings
from lib.jobs import Job
from lib.services import Services
from runtime.container import build_services
from runtime.worker import JobModule, Worker, discover_jobs
from tests.conftest import PROJECT_ROOT, TEST_SECRET


def test_project_jobs_are_discovered() -> None:
    names = {j.name for j in discover_jobs()}
    assert {"mitra_stale_sweep", "heartbeat_flush", "presence_heal"} <= names


class _Counter:
    """A job module stand-in that counts its ticks (shared by two workers)."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def run(self, ctx: object) -> None:
        with self.lock:
            self.calls += 1
        time.sleep(0.05)


def test_two_replicas_never_run_the_same_tick(settings: Settings) -> None:
    counter = _Counter()
    job = JobModule("counter", Job(every=lambda s: 0.5), counter)  # type: ignore[arg-type]
    services = [build_services(settings, application_name=f"w{i}") for i in range(2)]
    workers = [Worker(svc, [job], poll_seconds=0.02) for svc in services]
    try:
        for w in workers:
            w.start()
        deadline = time.monotonic() + 2.6

        def spin(w: Worker) -> None:
            while time.monotonic() < deadline:
                w.run_once()
                time.sleep(0.02)

        threads = [threading.Thread(target=spin, args=(w,)) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for svc in services:
            svc.close()
    # 2.6 s at one tick per 0.5 s: at most 6 ticks in all, however the two replicas interleave
    # (double-running would give about twice that); at least 4 even on a loaded machine.
    assert 4 <= counter.calls <= 6, counter.calls


def test_run_at_start_jobs_run_once_at_start(services: Services) -> None:
    counter = _Counter()
    job = JobModule("at_start", Job(every=lambda s: 3600, run_at_start=True), counter)  # type: ignore[arg-type]
    Worker(services, [job]).start()
    assert counter.calls == 1


def test_a_failing_job_does_not_stop_the_worker(services: Services, caplog: pytest.LogCaptureFixture) -> None:
    class Boom:
        def run(self, ctx: object) -> None:
            raise RuntimeError("boom")

    worker = Worker(services, [JobModule("boom", Job(every=lambda s: 3600), Boom())])  # type: ignore[arg-type]
    worker.start()
    worker.run_once()
    assert worker.ticks["boom"] == 1
    assert "job boom failed" in caplog.text


def test_worker_process_stops_cleanly_on_sigterm(settings: Settings) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "AUTH_JWT_SECRET": TEST_SECRET,
        "LOG_FORMAT": "text",
        "APP_ENV": "test",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "worker"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # SIGTERM once the loop runs (a fixed sleep raced a slow start on a loaded machine).
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if " running " in line:
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=30)
    out = "".join(seen) + rest
    assert proc.returncode == 0, out
    assert (
        "running chat_deadlines, chat_retention, extension_invoices, heartbeat_flush, metrics_sample, mitra_stale_sweep, "
        "payment_close, payment_expiry, payment_money_check, "
        "payment_reconcile, payment_recover, payment_reemit, presence_heal" in out
    )
    assert "stopped" in out


def test_stale_sweep_runs_on_its_cadence(settings: Settings, services: Services, mitra_login) -> None:
    from lib.presence.state import set_online

    mitra, _ = mitra_login()
    set_online(services.db, services.valkey, str(mitra["id"]), True)
    services.db.execute("UPDATE mitra_online_status SET last_heartbeat_at = now() - interval '1 minute'")
    services.valkey.delete(f"mitra:heartbeat:{mitra['id']}")
    fast = build_services(replace(settings, mitra_auto_offline_sweep_seconds=1), application_name="fast-worker")
    worker = Worker(fast, [j for j in discover_jobs() if j.name == "mitra_stale_sweep"], poll_seconds=0.05)
    try:
        worker.start()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            worker.run_once()
            row = services.db.fetch_one("SELECT is_online FROM mitra_online_status")
            if row and not row["is_online"]:
                break
            time.sleep(0.05)
    finally:
        fast.close()
    assert row == {"is_online": False}


def test_a_fast_job_keeps_its_cadence_while_a_slow_job_hangs_on_xendit(settings: Settings, anonymous) -> None:
    from tests.fakes import FakeXendit

    xendit = FakeXendit("xnd_secret")
    with xendit.running():
        slow_settings = replace(
            settings,
            xendit_enabled=True,
            xendit_secret_key="xnd_secret",
            xendit_webhook_token="token",
            xendit_base_url=xendit.url,
            payment_sweep_seconds=1,
            graceful_timeout=5,
        )
        svc = build_services(slow_settings, application_name="worker-cadence")
        customer = anonymous()["user"]["id"]
        # A pending invoice old enough for reconciliation: its GET will hang on the fake.
        svc.db.execute(
            "INSERT INTO payment_requests (customer_id, mode, tier_id, minutes, price, amount, expires_at, "
            "xendit_invoice_id, invoice_url, created_at) SELECT %(c)s, 'chat', id, 15, 30000, 30000, "
            "now() + interval '1 hour', 'inv_hang', 'https://x.test/inv', now() - interval '10 minutes' "
            "FROM pricing_tiers LIMIT 1",
            {"c": customer},
        )
        xendit.delay = 3.5
        fast_ticks: list[float] = []

        class Fast:
            def run(self, ctx: object) -> None:
                fast_ticks.append(time.monotonic())

        reconcile = next(j for j in discover_jobs() if j.name == "payment_reconcile")
        fast = JobModule("fast", Job(every=lambda s: 0.1), Fast())  # type: ignore[arg-type]
        worker = Worker(svc, [reconcile, fast], poll_seconds=0.05)
        thread = threading.Thread(target=worker.run_forever)
        try:
            thread.start()
            while not xendit.started:  # the reconcile tick is now waiting on Xendit
                time.sleep(0.01)
            stuck_at = time.monotonic()
            time.sleep(2.5)
            during = [t for t in fast_ticks if t >= stuck_at]
            assert worker.ticks["payment_reconcile"] == 0  # still stuck
        finally:
            worker.stop.set()
            thread.join(timeout=10)
            svc.close()
    # 2.5 s at one tick per 0.1 s is 25; a sequential worker would have run none. (Generous: a
    # loaded machine can stall a thread for a second.)
    assert len(during) >= 8, len(during)
    assert max(b - a for a, b in itertools.pairwise(during)) < 1.5


def test_worker_finishes_its_tick_on_stop(services: Services) -> None:
    events: list[str] = []

    class Slow:
        def run(self, ctx: object) -> None:
            events.append("start")
            time.sleep(0.6)
            events.append("end")

    worker = Worker(services, [JobModule("slow", Job(every=lambda s: 3600), Slow())])  # type: ignore[arg-type]
    thread = threading.Thread(target=worker.run_forever)
    thread.start()
    while "start" not in events:
        time.sleep(0.01)
    worker.stop.set()  # what SIGTERM does
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert events == ["start", "end"]
