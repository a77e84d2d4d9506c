"""Prometheus metrics (prometheus-client), one set for every process. Labels are bounded sets only:
route templates, methods, statuses, outcome names; never a user id, phone, token or raw path
(tests/lib/test_metrics.py walks the exposition to hold that).

Forked servers (granian, gunicorn) run prometheus-client's multiprocess mode: each process writes its
values to files under PROMETHEUS_MULTIPROC_DIR, and a scrape reads them all. The mode is chosen when
a value is first made, so `enable_multiprocess` runs in the server's master before it forks and the
metrics themselves are built on first use (`m()`), never at import.

REST requests are the exception: `RequestTally` counts them in the process and `RequestCollector`
exports them (one file per process beside prometheus-client's, summed by a scrape), through
prometheus-client's public custom-collector API only.
"""

from __future__ import annotations

import atexit
import bisect
import functools
import glob
import logging
import operator
import os
import re
import shutil
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import TypeVar

import orjson
import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LATENESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 15.0, 60.0)
ACCEPT_BUCKETS = (1, 2, 5, 10, 20, 30, 45, 60, 120, 300, 600)
LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """Every metric the service exports, each named `halobestie_*`, but the REST requests'
    (`RequestCollector`)."""

    def __init__(self) -> None:
        self.build_info = Gauge(
            "halobestie_build_info",
            "1, labelled with the version and process kind",
            ["version", "process"],
            multiprocess_mode="max",
        )
        self.db_pool = Gauge(
            "halobestie_db_pool_connections",
            "PostgreSQL pool connections by state (size, idle, waiting = requests queued for one)",
            ["state"],
            multiprocess_mode="livesum",
        )
        self.db_pool_timeouts = Counter(
            "halobestie_db_pool_timeouts", "Requests that waited DB_POOL_TIMEOUT_SECONDS for a connection", ["pool"]
        )
        self.valkey_errors = Counter(
            "halobestie_valkey_errors",
            "Valkey calls that failed; each is answered by the component's fallback (PostgreSQL or local)",
            ["component"],
        )
        self.valkey_up = Gauge(
            "halobestie_valkey_up", "1 when the worker's last ping answered", multiprocess_mode="max"
        )
        self.rate_limited = Counter("halobestie_rate_limit_refusals", "Requests refused by a rate limit", ["rule"])
        self.webhooks = Counter("halobestie_webhook_outcomes", "Xendit callbacks by outcome", ["outcome"])
        self.payments = Gauge(
            "halobestie_payment_requests",
            "Payment requests created in the last 24 hours, by status (sampled by the worker)",
            ["status"],
            multiprocess_mode="max",
        )
        self.pairing = Counter(
            "halobestie_pairing_outcomes", "Searches ended: paired, or the failure cause", ["request_type", "outcome"]
        )
        self.time_to_accept = Histogram(
            "halobestie_pairing_accept_seconds",
            "From the search's start to a Bestie's accept",
            ["request_type"],
            buckets=ACCEPT_BUCKETS,
        )
        self.lateness = Histogram(
            "halobestie_deadline_lateness_seconds",
            "How late a deadline fired after its time",
            ["deadline"],
            buckets=LATENESS_BUCKETS,
        )
        self.sockets = Gauge(
            "halobestie_sockets_connected", "Authenticated WebSockets held", ["user_type"], multiprocess_mode="livesum"
        )
        self.pushes = Counter("halobestie_pushes", "FCM pushes by outcome", ["type", "outcome"])
        self.job_runs = Counter("halobestie_worker_job_runs", "Worker job runs by outcome", ["job", "outcome"])
        self.retention_deleted = Counter(
            "halobestie_retention_deleted_rows", "Rows deleted by the retention job", ["table"]
        )
        self.frames_refused = Counter(
            "halobestie_gateway_frames_refused", "Client frames the gateway refused before any handler", ["reason"]
        )
        self.socket_closes = Counter("halobestie_gateway_closes", "Sockets the gateway closed, by close code", ["code"])
        self.loop_lag = Histogram(
            "halobestie_gateway_loop_lag_seconds",
            "How late the gateway's event loop woke a timer (every socket's frames wait as long)",
            buckets=LOOP_LAG_BUCKETS,
        )
        self.worker_tick = Gauge(
            "halobestie_worker_last_tick_timestamp_seconds",
            "When a worker last ran its loop",
            multiprocess_mode="max",
        )
        self.refunds_due = Gauge(
            "halobestie_refunds_due",
            "Refunds due: paid invoices that bought nothing, not yet sent back (sampled by the worker)",
            multiprocess_mode="max",
        )
        self.refunds_due_oldest = Gauge(
            "halobestie_refunds_due_oldest_seconds",
            "How long the oldest refund due has waited; 0 when none is due (sampled by the worker)",
            multiprocess_mode="max",
        )
        self.payments_unaccounted = Gauge(
            "halobestie_payments_unaccounted",
            "Paid invoices in no place or in two (session, extension, refund due, refund done), and chats "
            "with no paid invoice, over the reconciliation's window (sampled by the worker)",
            ["reason"],
            multiprocess_mode="max",
        )
        self.invoice_closures = Counter(
            "halobestie_invoice_closures", "Attempts to close an invoice at Xendit, by outcome", ["outcome"]
        )


_metrics: Metrics | None = None
_lock = threading.Lock()


def m() -> Metrics:
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = Metrics()
    return _metrics


REVISION_ENV = "GIT_REVISION"  # the image's build argument (Dockerfile, DEPLOY.md section 2)
_REVISION = re.compile(r"[0-9A-Za-z._-]{1,40}")  # a label value: a sha or a tag, nothing unbounded
_CHECKOUT = Path(__file__).resolve().parent.parent


@functools.cache
def revision() -> str:
    """The build's git revision: GIT_REVISION when the image was built with it, else this checkout's
    HEAD (`make dev`, tests), else "unknown" (an installed wheel, or no git)."""
    given = os.environ.get(REVISION_ENV, "").strip()
    if not given and (_CHECKOUT / ".git").exists():
        try:
            given = subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                cwd=_CHECKOUT,
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            given = ""
    return given if _REVISION.fullmatch(given) else "unknown"


def version() -> str:
    """build_info's version: the package's, with the revision as a PEP 440 local part
    ("0.1.0+1a2b3c4"), so the label changes with every deploy and not only with a release."""
    try:
        package = metadata.version("halobestie-backend")
    except metadata.PackageNotFoundError:
        package = "dev"
    return f"{package}+{revision()}"


def enable_multiprocess(process: str) -> str:
    """In a server's master, before it forks: values go to files every process shares. An existing
    PROMETHEUS_MULTIPROC_DIR is emptied (a restart must not add a dead process's gauges), else a
    fresh one is made. Returns the directory."""
    assert _metrics is None, "metrics were made before multiprocess mode was chosen"
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)
    else:
        path = tempfile.mkdtemp(prefix=f"halobestie-metrics-{process}-")
        os.environ[MULTIPROC_ENV] = path
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return path


def process_exited(pid: int) -> None:
    """A forked worker ended: its live gauges (sockets, pool) leave the sums. Its counters and its
    requests' file stay: totals never go back when a worker is replaced."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def registry() -> CollectorRegistry:
    """What a scrape reads: in multiprocess mode every process's files (prometheus-client's and the
    requests'), else this process's metrics."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        merged = CollectorRegistry()
        merged.register(ProcessFilesCollector(path))
        merged.register(RequestCollector(path))
        return merged
    global _local_collector
    with _lock:
        if _local_collector is None:
            _local_collector = RequestCollector(None)
            prometheus_client.REGISTRY.register(_local_collector)
    return prometheus_client.REGISTRY


_local_collector: RequestCollector | None = None


class ProcessFilesCollector(Collector):
    """prometheus-client's multiprocess files, summed with its public `MultiProcessCollector.merge`,
    leaving out a file a process is creating at that moment (empty until it sizes it) and trying
    again when one goes away between the listing and the read. Either made the whole scrape a 500
    ("A server error occurred"): seen once in CI's gateway metrics test."""

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self) -> Iterable[Metric]:
        for _ in range(2):
            try:
                return self._merge()
            except (FileNotFoundError, struct.error):
                pass  # a file went away or was being created between the listing and the read
        return self._merge()

    def _merge(self) -> list[Metric]:
        files = []
        for name in glob.glob(os.path.join(self.path, "*.db")):
            try:
                if os.path.getsize(name) >= 8:  # its header: how much of it is used
                    files.append(name)
            except FileNotFoundError:
                pass
        return list(multiprocess.MultiProcessCollector.merge(files, accumulate=True))  # type: ignore[no-untyped-call]


def exported_families() -> list[Metric]:
    """Every metric family this module exports, without samples (its name and type): what rules
    and dashboards may read (tests/test_observability.py)."""
    families: list[Metric] = list(RequestCollector(None).describe())
    for metric in vars(m()).values():
        families.extend(metric.describe())
    return families


def exposition() -> bytes:
    """The text format of every process's values (all of this server's workers in multiprocess mode)."""
    return prometheus_client.generate_latest(registry())


def serve_port(port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 (a private port; the NetworkPolicy limits it)
    """A process's private metrics port (METRICS_PORT), on a daemon thread."""
    prometheus_client.start_http_server(port, host, registry=registry())


def announce(process: str) -> None:
    m().build_info.labels(version(), process).set(1)


REQUESTS_HELP = "REST requests answered"
LATENCY_HELP = "REST request time, from the first middleware to the response"
REQUEST_LABELS = ("surface", "route", "method", "status")
LATENCY_LABELS = ("surface", "route", "method")
# The exposition's `le` values, as prometheus-client's Histogram wrote them ("0.002" .. "5.0", "+Inf").
LATENCY_LE = (*(repr(float(b)) for b in LATENCY_BUCKETS), "+Inf")
# One file per process beside prometheus-client's (its collector reads only `*.db`); written whole
# and renamed into place, so a scrape reads a process's totals as of one flush, never half of one.
REQUEST_FILES = "requests_*.json"

# A row: [count, sum of seconds, then one count per bucket of LATENCY_LE (not cumulative)].
Row = list[float]
Key = tuple[str, str, str, int]  # surface, route, method, status
K = TypeVar("K", bound=tuple[str | int, ...])

log = logging.getLogger(__name__)


class RequestTally:
    """A listener's request counts and latencies, kept in the process and added to its totals once a
    second (and before a scrape). Written straight through, multiprocess values (a lock, a pid check
    and an mmap write each, three per request) cost /health a fifth of its throughput
    (bench/run.py); a dict under one lock costs a few percent. prometheus-client has no public way
    to add n observations to a histogram at once, so the totals are not its metrics: each process
    writes them to its own file and `RequestCollector` sums the files at a scrape."""

    FLUSH_SECONDS = 1.0

    def __init__(self, surface: str) -> None:
        self.surface = surface
        self._bounds = (*LATENCY_BUCKETS, float("inf"))
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str, int], Row] = {}
        _tallies.append(self)

    def add(self, route: str, method: str, status: int, seconds: float) -> None:
        bucket = 2 + bisect.bisect_left(self._bounds, seconds)  # le: the first bound >= seconds
        key = (route, method, status)
        with self._lock:
            row = self._pending.get(key)
            if row is None:
                row = self._pending[key] = [0.0] * (2 + len(self._bounds))
            row[0] += 1
            row[1] += seconds
            row[bucket] += 1
        if not _flushing:  # the first request in this process (after the fork)
            _start_flusher()

    def take(self) -> dict[tuple[str, str, int], Row]:
        with self._lock:
            pending, self._pending = self._pending, {}
        return pending

    def forget(self) -> None:
        """In a forked child: the parent counts (and flushes) what it had; a lock held at the fork
        would never be released here."""
        self._lock = threading.Lock()
        self._pending = {}


_tallies: list[RequestTally] = []
_flushing = False  # a flag, not a pid: getpid() is a system call, and this is checked per request
_totals: dict[Key, Row] = {}  # this process's requests since it started
_flush_lock = threading.Lock()  # the flusher thread and a scrape of this process both flush
_own_file_read = False  # whether this process has taken over its pid's file (see _write)


def _forked() -> None:
    global _flushing, _totals, _flush_lock, _own_file_read
    _flushing = False  # the parent's thread did not come along
    _totals, _flush_lock, _own_file_read = {}, threading.Lock(), False
    for tally in _tallies:
        tally.forget()


os.register_at_fork(after_in_child=_forked)


def _start_flusher() -> None:
    """One thread per process adds every tally's requests to its totals each FLUSH_SECONDS."""
    global _flushing
    with _lock:
        if _flushing:
            return
        _flushing = True

    def run() -> None:
        while True:
            time.sleep(RequestTally.FLUSH_SECONDS)
            try:
                flush_local()
            except OSError:
                log.warning("could not write this process's request metrics", exc_info=True)

    threading.Thread(target=run, name="request-metrics", daemon=True).start()
    atexit.register(flush_local)


def _merge(into: dict[K, Row], key: K, row: Row) -> None:
    total = into.get(key)
    into[key] = list(row) if total is None else list(map(operator.add, total, row))


def flush_local() -> None:
    """What this process's tallies hold, into its totals and, in multiprocess mode, its file."""
    with _flush_lock:
        changed = False
        for tally in _tallies:
            for (route, method, status), row in tally.take().items():
                _merge(_totals, (tally.surface, route, method, status), row)
                changed = True
        path = os.environ.get(MULTIPROC_ENV)
        if path and (changed or not _own_file_read):
            _write(path)


def _file(path: str, pid: int) -> str:
    return os.path.join(path, f"requests_{pid}.json")


def _write(path: str) -> None:
    """This process's totals, replacing its file. A file already there under this pid is a dead
    process's whose pid the kernel gave again: its counts are taken over first, as prometheus-client
    does with its own files, so no total goes back."""
    global _own_file_read
    pid = os.getpid()
    final = _file(path, pid)
    if not _own_file_read:
        _own_file_read = True
        for key, row in _read(final):
            _merge(_totals, key, row)
        if not _totals:
            return
    rows = [[*key, *row] for key, row in _totals.items()]
    temporary = os.path.join(path, f".requests_{pid}.tmp")
    with open(temporary, "wb") as out:
        out.write(orjson.dumps(rows))
    os.replace(temporary, final)


def _read(name: str) -> Iterable[tuple[Key, Row]]:
    try:
        with open(name, "rb") as f:
            rows = orjson.loads(f.read())
    except FileNotFoundError:
        return []
    except orjson.JSONDecodeError:
        log.warning("unreadable request metrics file %s, left out of the sums", name)
        return []
    return [((r[0], r[1], r[2], r[3]), r[4:]) for r in rows]


class RequestCollector(Collector):
    """`halobestie_http_requests_total` and `halobestie_http_request_duration_seconds`, summed over
    every process's file under `path` (dead ones included, like prometheus-client's counters), or
    this process's totals when `path` is None. prometheus-client's documented custom collector."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        flush_local()
        requests, latency = self._families()
        counts: dict[Key, float] = {}
        rows: dict[tuple[str, str, str], Row] = {}
        for key, row in self._rows():
            counts[key] = counts.get(key, 0.0) + row[0]
            _merge(rows, key[:3], row)
        for (surface, route, method, status), n in counts.items():
            requests.add_metric([surface, route, method, str(status)], n)
        for labels, row in rows.items():
            cumulative, buckets = 0.0, []
            for le, n in zip(LATENCY_LE, row[2:], strict=True):
                cumulative += n
                buckets.append((le, cumulative))
            latency.add_metric(list(labels), buckets, row[1])
        return [requests, latency]

    def _families(self) -> tuple[CounterMetricFamily, HistogramMetricFamily]:
        return (
            CounterMetricFamily("halobestie_http_requests", REQUESTS_HELP, labels=REQUEST_LABELS),
            HistogramMetricFamily("halobestie_http_request_duration_seconds", LATENCY_HELP, labels=LATENCY_LABELS),
        )

    def _rows(self) -> Iterable[tuple[Key, Row]]:
        if self.path is None:
            with _flush_lock:
                return [(key, list(row)) for key, row in _totals.items()]
        found: list[tuple[Key, Row]] = []
        for name in glob.glob(os.path.join(self.path, REQUEST_FILES)):
            found.extend(_read(name))
        return found
