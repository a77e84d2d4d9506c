"""Real server processes (granian, the default, and gunicorn) serving each listener: start, stop,
binds, bodies through the real HTTP server."""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests

from lib.config.app import set_values
from lib.config.env import Settings
from lib.services import Services
from tests.conftest import PROJECT_ROOT
from tests.helpers import free_port, process_env, runtime_process, stop_process, wait_http


@pytest.fixture(params=["granian", "gunicorn"])
def served(settings: Settings, request: pytest.FixtureRequest) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "serve", "public", "--bind", f"127.0.0.1:{port}", "--server", request.param],
        cwd=PROJECT_ROOT,
        env=process_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield f"http://127.0.0.1:{port}", proc
    stop_process(proc)


def _chunks(data: bytes, size: int = 7) -> Iterator[bytes]:
    # A generator body makes requests send Transfer-Encoding: chunked with no Content-Length.
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_serves_and_stops_cleanly(served: tuple[str, subprocess.Popen[str]]) -> None:
    url, proc = served
    # Held on purpose: its idle keep-alive connection must not stall the graceful stop.
    health = wait_http(url + "/health")
    assert health.status_code == 200
    assert health.json()["data"] == {"status": "ok"}
    assert requests.get(url + "/ready", timeout=5).json()["data"]["database"] == "up"
    assert requests.get(url + "/internal/health", timeout=5).status_code == 404
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=40)
    assert proc.returncode == 0, out
    assert time.monotonic() - started < 10, "an idle keep-alive connection held up the stop"
    assert "[tz] process=UTC" in out
    assert '"logger": "access"' in out
    assert '"path": "/internal/health", "status": 404' in out
    assert '"path": "/ready"' not in out  # successful requests log only at DEBUG


def test_internal_listener_binds_internal_host(settings: Settings) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "serve", "internal"],
        cwd=PROJECT_ROOT,
        env=process_env(settings, INTERNAL_PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_http(f"http://127.0.0.1:{port}/health").status_code == 200
        assert requests.get(f"http://127.0.0.1:{port}/api/shared/auth-providers", timeout=5).status_code == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=40)
    assert f"Listening at: http://127.0.0.1:{port}" in out


def test_serve_refuses_a_weak_secret(settings: Settings) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "runtime", "serve", "public", "--bind", f"127.0.0.1:{free_port()}"],
        cwd=PROJECT_ROOT,
        env=process_env(settings, AUTH_JWT_SECRET="short"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert "AUTH_JWT_SECRET must be at least 32 bytes" in run.stdout + run.stderr


def test_chunked_bodies_are_read_like_sized_ones(served: tuple[str, subprocess.Popen[str]]) -> None:
    url, _ = served
    wait_http(url + "/health")
    headers = {"Content-Type": "application/json"}
    signup = url + "/api/shared/auth/anonymous"
    sent = requests.post(signup, data=_chunks(b'{"display_name": "Chunky"}'), headers=headers, timeout=10)
    assert sent.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in sent.request.headers
    assert sent.status_code == 201, sent.text
    assert sent.json()["data"]["user"]["display_name"] == "Chunky"

    malformed = requests.post(signup, data=_chunks(b'{"display_name": '), headers=headers, timeout=10)
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "BAD_REQUEST"

    wrong_type = requests.post(
        signup, data=_chunks(b"display_name=x"), headers={"Content-Type": "text/plain"}, timeout=10
    )
    assert wrong_type.status_code == 415

    limit = 64 * 1024
    head, tail = b'{"display_name": "A", "pad": "', b'"}'
    at_limit = head + b"x" * (limit - len(head) - len(tail)) + tail
    assert len(at_limit) == limit
    ok = requests.post(signup, data=_chunks(at_limit, 4096), headers=headers, timeout=10)
    assert ok.status_code == 201, ok.text
    over = at_limit[:-2] + b'x"}'
    refused = requests.post(signup, data=_chunks(over, 4096), headers=headers, timeout=10)
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_hostile_input_is_an_enveloped_4xx_through_the_real_server(served: tuple[str, subprocess.Popen[str]]) -> None:
    """Issue 22's 500s, replayed through each server: every answer is a 4xx in the envelope with
    an X-Request-Id, and the worker logs no traceback."""
    url, proc = served
    wait_http(url + "/health")
    headers = {"Content-Type": "application/json"}
    signup = url + "/api/shared/auth/anonymous"
    token = requests.post(signup, json={}, timeout=10).json()["data"]["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    answers = [
        requests.post(signup, data=b'{"display_name": "\\ud800"}', headers=headers, timeout=10),
        requests.post(signup, data=b'{"\\ud800": 1}', headers=headers, timeout=10),
        requests.post(signup, data=b'{"display_name": "a\\u0000"}', headers=headers, timeout=10),
        requests.post(signup, data=b"[" * 1100 + b"]" * 1100, headers=headers, timeout=10),
        requests.patch(
            url + "/api/client/me", data=b'{"display_name": "\\udfff"}', headers={**headers, **auth}, timeout=10
        ),
        requests.get(url + "/api/client/chat/history?limit=%C2%B2", headers=auth, timeout=10),
        requests.get(url + "/api/client/chat/history?limit=" + "9" * 5000, headers=auth, timeout=10),
        requests.get(url + "/api/client/chat/history?cursor=" + "W" * 1500, headers=auth, timeout=10),
    ]
    for answer in answers:
        assert 400 <= answer.status_code < 500, (str(answer.request.url)[:80], answer.status_code, answer.text[:200])
        assert answer.json()["success"] is False
        assert answer.json()["error"]["code"]
        assert answer.headers.get("X-Request-Id")
    output = stop_process(proc)
    assert "Traceback" not in output


def test_granian_workers_do_not_outlive_a_killed_master(settings: Settings) -> None:
    """An OOM-killed master must not leave its workers serving on the port (PR_SET_PDEATHSIG)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "serve", "public", "--bind", f"127.0.0.1:{port}", "--server", "granian"],
        cwd=PROJECT_ROOT,
        env=process_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_http(f"http://127.0.0.1:{port}/health")
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/health", timeout=1)
        except requests.ConnectionError:
            return
        time.sleep(0.2)
    pytest.fail("a granian worker still serves after its master was killed")


@pytest.mark.parametrize("entry", ["runtime.public", "runtime.internal", "runtime.realtime"])
def test_a_workers_app_is_frozen_out_of_the_collectors_sight(settings: Settings, entry: str) -> None:
    """What a worker loads lives as long as it does: full collections must not rescan it (a
    database-bound endpoint stalled for p99 832 ms without this, runtime/boot.py `frozen`)."""
    code = f"import gc; gc.collect(); import {entry}; print(gc.get_freeze_count())"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env=process_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) > 50_000  # the modules, the app, lib: not a handful of objects


@pytest.mark.parametrize("server", ["granian", "gunicorn"])
def test_a_limit_per_address_counts_an_ipv6_client_by_its_64_through_the_real_server(
    settings: Settings, services: Services, server: str
) -> None:
    """Behind one proxy (TRUSTED_PROXY_HOPS=1), sign-ups from three addresses of one /64 share the
    limit of one address; another /64 has its own."""
    set_values(services.db, services.bus, {"anonymous_signups_per_ip_per_hour": 2}, None)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = process_env(settings, TRUSTED_PROXY_HOPS="1")
    with runtime_process(["serve", "public", "--bind", f"127.0.0.1:{port}", "--server", server], env, url + "/health"):

        def sign_up(address: str) -> int:
            headers = {"X-Forwarded-For": address}
            return requests.post(url + "/api/shared/auth/anonymous", json={}, headers=headers, timeout=10).status_code

        assert [sign_up(a) for a in ("2001:db8:9:1::1", "2001:db8:9:1::2", "2001:db8:9:1:ab::3")] == [201, 201, 429]
        assert sign_up("2001:db8:9:2::1") == 201


@pytest.mark.parametrize("server", ["granian", "gunicorn"])
def test_ipv4_clients_of_a_dual_stack_listener_keep_a_limit_each(
    settings: Settings, services: Services, server: str
) -> None:
    """Bound to [::] with no proxy trusted, IPv4 clients arrive as ::ffff:a.b.c.d: each is still
    counted alone, not all of them in ::/64 together."""
    try:
        socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True).close()
    except (OSError, ValueError) as exc:  # ValueError: a platform without dual-stack sockets
        pytest.skip(f"this machine cannot bind a dual-stack IPv6 socket ({exc})")
    set_values(services.db, services.bus, {"anonymous_signups_per_ip_per_hour": 2}, None)
    port = free_port()
    bind = ["serve", "public", "--bind", f"[::]:{port}", "--server", server]
    with runtime_process(bind, process_env(settings), f"http://127.0.0.1:{port}/health"):

        def sign_up(source: str) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
            try:
                conn.request(
                    "POST", "/api/shared/auth/anonymous", body=b"{}", headers={"Content-Type": "application/json"}
                )
                return conn.getresponse().status
            finally:
                conn.close()

        assert [sign_up("127.0.0.1") for _ in range(3)] == [201, 201, 429]
        assert sign_up("127.0.0.2") == 201
