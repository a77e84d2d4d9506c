"""Metrics: names and labels (a scrape after a request shows its route template), no label that
could hold a user id, phone or token, one scrape summing every worker of a real server, and the
request metrics' files summed across processes, dead ones included, through public API only."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from falcon import testing
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from lib import metrics as prom
from lib.clock import utcnow
from lib.config.env import Settings
from lib.jobs import JobCtx
from lib.services import Services
from runtime.app import create_app
from tests.chatflow import Chat, job
from tests.conftest import PROJECT_ROOT, bearer
from tests.helpers import free_port, process_env, wait_http

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-", re.I)
PHONE = re.compile(r"\+?62\d{6,}|\b0?8\d{8,}")
TOKEN = re.compile(r"eyJ[A-Za-z0-9_-]{8,}")
# Every label name the service uses; a new one is a decision, made here, about its cardinality.
LABELS = {
    "surface", "route", "method", "status", "state", "pool", "component", "process", "rule", "outcome",
    "request_type", "deadline", "user_type", "type", "job", "version", "le", "table", "reason", "code",
}  # fmt: skip


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found.setdefault(s.name, []).append((s.labels, s.value))
    return found


def value(found: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for got, v in found.get(name, []) if all(got.get(k) == want for k, want in labels.items()))


def check_bounded(found: dict[str, list[tuple[dict[str, str], float]]]) -> None:
    for name, rows in found.items():
        if not name.startswith("halobestie_"):
            continue
        for labels, _ in rows:
            assert set(labels) <= LABELS, (name, labels)
            for label_value in labels.values():
                assert not UUID.search(label_value), (name, labels)
                assert not PHONE.search(label_value), (name, labels)
                assert not TOKEN.search(label_value), (name, labels)


def test_a_scrape_shows_the_route_template_and_no_identifier(services: Services, anonymous, cc_login) -> None:
    public = testing.TestClient(create_app("public", services=services))
    internal = testing.TestClient(create_app("internal", services=services))
    customer = anonymous()
    session_id = uuid.uuid4()
    before = samples(internal.simulate_get("/internal/metrics").text)
    got = public.simulate_get(f"/api/shared/chat/{session_id}/info", headers=bearer(customer["access_token"]))
    assert got.status_code == 404
    public.simulate_get("/no/such/route/+6281234567890")
    for _ in range(3):
        public.simulate_post("/api/shared/auth/otp/request", json={"phone": "+6281234567890"})
    scrape = internal.simulate_get("/internal/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    found = samples(scrape.text)
    route = "/api/shared/chat/{session_id:uuid}/info"
    key = {"surface": "public", "route": route, "method": "GET", "status": "404"}
    assert (
        value(found, "halobestie_http_requests_total", **key)
        == value(before, "halobestie_http_requests_total", **key) + 1
    )
    counted = value(found, "halobestie_http_request_duration_seconds_count", surface="public", route=route)
    assert counted >= 1
    assert (
        value(found, "halobestie_http_request_duration_seconds_bucket", surface="public", route=route, le="+Inf")
        == counted
    )
    assert value(found, "halobestie_http_requests_total", route="unmatched", status="404") >= 1
    assert value(found, "halobestie_build_info", process="public") == 1
    assert "halobestie_db_pool_connections" in found
    check_bounded(found)


@pytest.fixture
def two_workers(settings: Settings) -> Iterator[tuple[str, str, subprocess.Popen[str]]]:
    port, metrics_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "serve", "internal", "--bind", f"127.0.0.1:{port}"],
        cwd=PROJECT_ROOT,
        env=process_env(settings, WEB_CONCURRENCY="2", METRICS_PORT=str(metrics_port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}", proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=40)


def test_one_scrape_sums_every_worker_of_a_real_server(two_workers: tuple[str, str, subprocess.Popen[str]]) -> None:
    url, private, _ = two_workers
    wait_http(url + "/health")
    # New connections each time, so both workers (SO_REUSEPORT) answer some of them.
    for _ in range(40):
        assert requests.get(url + "/health", timeout=5, headers={"Connection": "close"}).status_code == 200
    key = {"surface": "internal", "route": "/health", "method": "GET", "status": "200"}
    # Each worker adds its requests to the shared files within a second (lib/metrics.RequestTally).
    deadline = time.monotonic() + 5
    while True:
        from_listener = samples(requests.get(url + "/internal/metrics", timeout=5).text)
        from_port = samples(requests.get(private + "/metrics", timeout=5).text)
        total = value(from_port, "halobestie_http_requests_total", **key)
        if total >= 40 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # wait_http's own probes count too: at least the 40, from a master that served none of them.
    assert total >= 40
    assert value(from_listener, "halobestie_http_requests_total", **key) >= 40
    assert (
        value(from_port, "halobestie_http_request_duration_seconds_count", surface="internal", route="/health") == total
    )
    assert len([1 for labels, _ in from_port["halobestie_build_info"] if labels.get("process") == "internal"]) == 1
    check_bounded(from_port)


def test_pairing_deadlines_and_the_worker_sample(chat: Chat) -> None:
    before = samples(prom.exposition().decode())
    chat.paired()
    lonely = chat.customer("Sendiri")
    searching = chat.session_of(chat.pay_for(lonely))
    chat.due_now(searching, "search_expires_at")
    chat.tick()
    job("metrics_sample").module.run(JobCtx(chat.pay, logging.getLogger("t"), utcnow))
    after = samples(prom.exposition().decode())

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("halobestie_pairing_outcomes_total", request_type="blast", outcome="paired") == 1
    assert delta("halobestie_pairing_outcomes_total", request_type="blast", outcome="PAIRING_TIMEOUT") == 1
    assert delta("halobestie_pairing_accept_seconds_count", request_type="blast") == 1
    assert delta("halobestie_deadline_lateness_seconds_count", deadline="search_window") == 1
    assert delta("halobestie_webhook_outcomes_total", outcome="confirmed") == 2
    assert value(after, "halobestie_payment_requests", status="consumed") == 1
    assert value(after, "halobestie_payment_requests", status="failed_pairing") == 1
    assert value(after, "halobestie_valkey_up") == 1
    check_bounded(after)


# What dashboards and alerts (deploy/observability) read, as prometheus-client's own Counter and
# Histogram wrote it in multiprocess mode before RequestCollector: type, help, labels, `le` values.
REQUEST_FAMILIES = {
    "halobestie_http_requests": (
        "counter",
        "REST requests answered",
        {"halobestie_http_requests_total": {"surface", "route", "method", "status"}},
    ),
    "halobestie_http_request_duration_seconds": (
        "histogram",
        "REST request time, from the first middleware to the response",
        {
            "halobestie_http_request_duration_seconds_bucket": {"surface", "route", "method", "le"},
            "halobestie_http_request_duration_seconds_count": {"surface", "route", "method"},
            "halobestie_http_request_duration_seconds_sum": {"surface", "route", "method"},
        },
    ),
}
LE = ["0.002", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "+Inf"]

# A worker process: counts requests (seconds from argv), flushes its file and exits. "fork": the
# counts are split between a parent and its forked child, each counting only its own.
# "reuse <pid>": first takes that dead process's file as its own, as when the kernel gives a
# pid again.
WORKER = """
import os, sys
from lib import metrics as prom
surface, seconds, mode = sys.argv[1], [float(s) for s in sys.argv[2].split(",")], sys.argv[3:]
if mode[:1] == ["reuse"]:
    folder = os.environ[prom.MULTIPROC_ENV]
    os.replace(os.path.join(folder, f"requests_{mode[1]}.json"), os.path.join(folder, f"requests_{os.getpid()}.json"))
tally = prom.RequestTally(surface)
tally.add("/api/x", "POST", 503, 0.3)
if mode == ["fork"]:
    child = os.fork()
    if child == 0:
        tally.add("/health", "GET", 200, seconds[0])
        prom.flush_local()
        os._exit(0)
    os.waitpid(child, 0)
    seconds = seconds[1:]
for s in seconds:
    tally.add("/health", "GET", 200, s)
prom.flush_local()
print(os.getpid())
"""


def worker(folder: Path, surface: str, seconds: str, *mode: str) -> int:
    env = {**os.environ, prom.MULTIPROC_ENV: str(folder)}
    done = subprocess.run(
        [sys.executable, "-c", WORKER, surface, seconds, *mode],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(done.stdout.split()[-1])


def scrape(folder: Path) -> str:
    """What the scrape registry of a multiprocess server answers for these files."""
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged, path=str(folder))  # type: ignore[no-untyped-call]
    merged.register(prom.RequestCollector(str(folder)))
    return generate_latest(merged).decode()


def test_request_files_sum_across_processes_and_a_dead_ones_stay(tmp_path: Path) -> None:
    first = worker(tmp_path, "public", "0.001,0.003,0.2")
    once = samples(scrape(tmp_path))
    assert value(once, "halobestie_http_requests_total", route="/health", status="200") == 3
    # A worker exits and is replaced: what it counted stays in the sums (the counters' contract).
    multiprocess.mark_process_dead(first, str(tmp_path))  # type: ignore[no-untyped-call]  # as process_exited
    worker(tmp_path, "public", "0.004,7")
    found = samples(scrape(tmp_path))
    health = {"surface": "public", "route": "/health", "method": "GET"}
    assert value(found, "halobestie_http_requests_total", status="200", **health) == 5
    assert value(found, "halobestie_http_requests_total", route="/api/x", method="POST", status="503") == 2
    buckets = {
        labels["le"]: v
        for labels, v in found["halobestie_http_request_duration_seconds_bucket"]
        if labels["route"] == "/health"
    }
    assert buckets == {
        "0.002": 1, "0.005": 3, "0.01": 3, "0.025": 3, "0.05": 3, "0.1": 3, "0.25": 4, "0.5": 4, "1.0": 4,
        "2.5": 4, "5.0": 4, "+Inf": 5,
    }  # fmt: skip
    assert value(found, "halobestie_http_request_duration_seconds_count", **health) == 5
    assert value(found, "halobestie_http_request_duration_seconds_sum", **health) == pytest.approx(7.208)
    assert value(found, "halobestie_http_request_duration_seconds_count", route="/api/x") == 2


def test_a_forked_child_and_a_reused_pid_count_each_request_once(tmp_path: Path) -> None:
    parent = worker(tmp_path, "internal", "0.001,0.002,0.003", "fork")
    found = samples(scrape(tmp_path))
    # The child counted one /health, the parent two and the POST it held at the fork, once.
    assert value(found, "halobestie_http_requests_total", route="/health") == 3
    assert value(found, "halobestie_http_requests_total", route="/api/x") == 1
    assert len(list(tmp_path.glob("requests_*.json"))) == 2
    worker(tmp_path, "internal", "0.001", "reuse", str(parent))
    found = samples(scrape(tmp_path))
    assert value(found, "halobestie_http_requests_total", route="/health") == 4
    assert value(found, "halobestie_http_requests_total", route="/api/x") == 2


def test_request_metrics_keep_their_names_labels_and_buckets(tmp_path: Path) -> None:
    worker(tmp_path, "public", "0.01")
    families = {f.name: f for f in text_string_to_metric_families(scrape(tmp_path))}
    for name, (kind, documentation, sample_labels) in REQUEST_FAMILIES.items():
        family = families[name]
        assert (family.type, family.documentation) == (kind, documentation)
        assert {s.name: set(s.labels) for s in family.samples} == sample_labels
    histogram = families["halobestie_http_request_duration_seconds"].samples
    assert [s.labels["le"] for s in histogram if s.labels.get("route") == "/health" and "le" in s.labels] == LE
    check_bounded(samples(scrape(tmp_path)))


# prometheus-client's private attributes (its metric, value and registry internals), reached on an
# object that is not our own `self`: a pinned upgrade would be needed to keep them working.
PRIVATE = re.compile(
    r"(?<!\bself)\._(buckets|sum|count|value|values|metrics|upper_bounds|labelnames|labelvalues|created|"
    r"child_samples|multi_samples|samples|metric_init|raise_if_not_observable|names_to_collectors|"
    r"collector_to_names|lock)\b"
)


def test_no_private_attribute_of_prometheus_client_is_used() -> None:
    found = [
        f"{path.relative_to(PROJECT_ROOT)}:{n}: {line.strip()}"
        for folder in ("lib", "runtime")
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE.search(line)
    ]
    assert found == []
    # The pattern catches what lib/metrics.py did before, and not our own objects' attributes.
    assert PRIVATE.search("child._sum.inc(row[1])")
    assert PRIVATE.search("child._buckets[i].inc(n)")
    assert not PRIVATE.search("return self._value if fresh else None")


def test_a_scrape_leaves_out_a_file_a_process_is_creating(tmp_path, monkeypatch) -> None:
    """A process creates its `*.db` file empty and sizes it a moment later: a scrape in between
    answered 500 for every metric (prometheus-client cannot read an empty file)."""
    from prometheus_client import generate_latest
    from prometheus_client.mmap_dict import MmapedDict

    from lib import metrics

    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    written = MmapedDict(str(tmp_path / "counter_101.db"))  # type: ignore[no-untyped-call]
    written.write_value('["halobestie_t_total", "halobestie_t_total", {}, "help"]', 3.0, 0.0)  # type: ignore[no-untyped-call]
    written.close()  # type: ignore[no-untyped-call]
    (tmp_path / "counter_102.db").touch()  # being created right now
    text = generate_latest(metrics.registry()).decode()
    assert "halobestie_t_total 3.0" in text
