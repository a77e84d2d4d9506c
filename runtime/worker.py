"""The worker: runs the scheduled jobs of functions/jobs/, safely beside other replicas.

Each job runs in its own thread on its own cadence. Each has a row in job_schedule; a tick is
claimed by one conditional UPDATE that moves next_run_at forward, so exactly one replica runs each
tick and a restart loses nothing. SIGTERM lets every running tick finish, then the process exits.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType, ModuleType

from lib import metrics as prom
from lib.clock import utcnow
from lib.errors import ApiError
from lib.jobs import Job, JobCtx
from lib.metrics import m
from lib.services import Services
from runtime.router import FUNCTIONS_DIR, check_module, load_module, module_files

log = logging.getLogger("runtime.worker")


@dataclass(frozen=True)
class JobModule:
    name: str
    job: Job
    module: ModuleType


def discover_jobs(root: Path = FUNCTIONS_DIR) -> list[JobModule]:
    found = []
    for dotted, path in module_files(root, top={"jobs"}):
        module = load_module(dotted, path)
        job, _ = check_module(module, path, "JOB", Job, ("run",), "run(ctx)")
        found.append(JobModule(path.stem, job, module))
    return found


_CLAIM = """
UPDATE job_schedule SET next_run_at = now() + make_interval(secs => %(every)s), last_run_at = now(),
       last_owner = %(owner)s
WHERE name = %(name)s AND next_run_at <= now()
RETURNING next_run_at
"""


class Worker:
    """One thread per job, so each keeps its own cadence: a sweep stuck on a slow outside call
    (a reconcile waiting on Xendit) never delays a fast job's tick."""

    def __init__(self, services: Services, jobs: list[JobModule], *, poll_seconds: float = 0.2) -> None:
        self.services = services
        self.jobs = jobs
        self.poll = poll_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.stop = threading.Event()
        self._due: dict[str, float] = {}
        self.ticks: dict[str, int] = {j.name: 0 for j in jobs}
        self._threads: list[threading.Thread] = []

    def _every(self, job: JobModule) -> float:
        return float(job.job.every(self.services.settings))

    def _run(self, job: JobModule) -> None:
        started = time.monotonic()
        outcome = "ok"
        try:
            job.module.run(JobCtx(self.services, logging.getLogger(f"jobs.{job.name}"), utcnow))
        except ApiError as exc:  # e.g. the database is away: the next tick tries again
            outcome = "unavailable"
            log.warning("job %s: %s", job.name, exc)
        except Exception:
            outcome = "failed"
            log.exception("job %s failed", job.name)
        self.ticks[job.name] += 1
        metrics = m()
        metrics.job_runs.labels(job.name, outcome).inc()
        metrics.worker_tick.set(time.time())
        log.debug("job %s took %.1f ms", job.name, (time.monotonic() - started) * 1000)

    def _claim(self, job: JobModule) -> bool:
        with self.services.db.connection() as conn:
            claimed = conn.execute(
                _CLAIM, {"every": self._every(job), "owner": self.owner, "name": job.name}
            ).fetchone()
            if claimed is None:  # another replica ran it: wait for the time it set
                row = conn.execute(
                    "SELECT next_run_at, now() AS now FROM job_schedule WHERE name = %(job_name)s",
                    {"job_name": job.name},
                ).fetchone()
                self._due[job.name] = time.monotonic() + _seconds_until(row)
                return False
        self._due[job.name] = time.monotonic() + self._every(job)
        return True

    def start(self) -> None:
        self.services.db.execute(
            "INSERT INTO job_schedule (name) SELECT unnest(%(names)s::text[]) ON CONFLICT (name) DO NOTHING",
            {"names": [j.name for j in self.jobs]},
        )
        for job in self.jobs:
            if job.job.run_at_start:
                self._run(job)

    def tick(self, job: JobModule) -> None:
        """Run the job if its tick is due here and this replica wins the claim."""
        if time.monotonic() < self._due.get(job.name, 0.0):
            return
        if job.job.every_replica:
            self._due[job.name] = time.monotonic() + self._every(job)
            self._run(job)
            return
        try:
            claimed = self._claim(job)
        except ApiError as exc:
            log.warning("job %s not claimed: %s", job.name, exc)
            self._due[job.name] = time.monotonic() + 1.0
            return
        if claimed:
            self._run(job)

    def run_once(self) -> None:
        """Every due job once, in this thread (tests drive the worker step by step with it)."""
        for job in self.jobs:
            if self.stop.is_set():
                return
            self.tick(job)

    def _loop(self, job: JobModule) -> None:
        while not self.stop.is_set():
            self.tick(job)
            wait = self._due.get(job.name, 0.0) - time.monotonic()
            self.stop.wait(min(self.poll, max(wait, 0.01)))

    def run_forever(self) -> None:
        self.start()
        log.info("worker %s running %s", self.owner, ", ".join(j.name for j in self.jobs))
        self._threads = [
            threading.Thread(target=self._loop, args=(job,), name=f"job-{job.name}", daemon=True) for job in self.jobs
        ]
        for thread in self._threads:
            thread.start()
        # A timed wait: the main thread must wake to run a signal handler (a SIGTERM right after a
        # SIGCONT was missed 3 times out of 3 by an untimed wait).
        while not self.stop.wait(1.0):
            pass
        # Each thread finishes the tick it is in; one stuck on an outside call past the graceful
        # timeout is abandoned (daemon) rather than holding the process.
        deadline = time.monotonic() + self.services.settings.graceful_timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        log.info("worker %s stopped", self.owner)


def _seconds_until(row: dict[str, datetime] | None) -> float:
    if row is None:
        return 1.0
    return max(0.0, (row["next_run_at"] - row["now"]).total_seconds())


def main(services: Services) -> None:
    worker = Worker(services, discover_jobs())
    prom.announce("worker")
    if services.settings.metrics_port:
        prom.serve_port(services.settings.metrics_port)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("worker got signal %s: finishing the current tick", signum)
        worker.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        worker.run_forever()
    finally:
        services.close()
