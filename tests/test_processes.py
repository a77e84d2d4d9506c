"""Real processes: gunicorn serving each listener, and `python -m runtime dev` end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from lib.config.env import Settings
from tests.conftest import PROJECT_ROOT, TEST_SECRET
from tests.helpers import free_port, wait_http


def _env(settings: Settings | None = None, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AUTH_JWT_SECRET": TEST_SECRET,
        "LOG_FORMAT": "json",
        "WEB_CONCURRENCY": "1",
        "APP_ENV": "test",
    }
    if settings is not None:
        env |= {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    return env | extra


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "serve", "public", "--bind", f"127.0.0.1:{port}"],
        cwd=PROJECT_ROOT,
        env=_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield f"http://127.0.0.1:{port}", proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_gunicorn_serves_and_stops_cleanly(served: tuple[str, subprocess.Popen[str]]) -> None:
    url, proc = served
    # Held on purpose: its idle keep-alive connection must not stall the graceful stop.
    health = wait_http(url + "/health")
    assert health.status_code == 200 and health.json()["data"] == {"status": "ok"}
    assert requests.get(url + "/ready", timeout=5).json()["data"]["database"] == "up"
    assert requests.get(url + "/internal/health", timeout=5).status_code == 404
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=40)
    assert proc.returncode == 0, out
    assert time.monotonic() - started < 10, "an idle keep-alive connection held up the stop"
    assert "[tz] process=UTC" in out
    assert '"logger": "access"' in out and '"path": "/internal/health", "status": 404' in out
    assert '"path": "/ready"' not in out  # successful requests log only at DEBUG


def test_internal_listener_binds_internal_host(settings: Settings) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "serve", "internal"],
        cwd=PROJECT_ROOT,
        env=_env(settings, INTERNAL_PORT=str(port)),
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
        env=_env(settings, AUTH_JWT_SECRET="short"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert "AUTH_JWT_SECRET must be at least 32 bytes" in run.stdout + run.stderr


def _run_dev(env: dict[str, str]) -> tuple[int, str]:
    public, internal = free_port(), free_port()
    env = env | {"PUBLIC_PORT": str(public), "INTERNAL_PORT": str(internal)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "dev"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_http(f"http://127.0.0.1:{public}/ready", timeout=90).status_code == 200
        assert wait_http(f"http://127.0.0.1:{internal}/ready").status_code == 200
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    for port in (public, internal):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
    return proc.returncode, out


def test_dev_runs_everything_with_given_servers(settings: Settings, tmp_path: Path) -> None:
    env = _env(settings, DEV_DATA_DIR=str(tmp_path))
    del env["AUTH_JWT_SECRET"]  # dev makes its own and keeps it under the data dir
    code, out = _run_dev(env)
    assert code == 0, out
    assert "control center admin created: admin@halobestie.local / " in out
    assert (tmp_path / "jwt_secret").exists()
    code, out = _run_dev(env)
    assert code == 0, out
    assert "an admin already exists" in out


@pytest.mark.skipif(os.environ.get("SKIP_EMBEDDED") == "1", reason="SKIP_EMBEDDED=1")
def test_dev_starts_embedded_servers_when_urls_are_unset(tmp_path: Path) -> None:
    env = _env(DEV_DATA_DIR=str(tmp_path / "dev"))
    del env["AUTH_JWT_SECRET"]
    code, out = _run_dev(env)
    assert code == 0, out
    assert "starting embedded PostgreSQL" in out and "starting embedded Valkey" in out
    assert "migrations: " in out
    assert (tmp_path / "dev" / "pg" / "PG_VERSION").exists()


def _chunks(data: bytes, size: int = 7) -> Iterator[bytes]:
    # A generator body makes requests send Transfer-Encoding: chunked with no Content-Length.
    for i in range(0, len(data), size):
        yield data[i : i + size]


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
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "BAD_REQUEST"

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
    assert refused.status_code == 413 and refused.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
