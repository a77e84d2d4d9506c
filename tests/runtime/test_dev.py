"""`python -m runtime dev` end to end, with given servers and with embedded ones."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from lib.config.env import Settings
from lib.transcripts import KeyRing
from tests.conftest import PROJECT_ROOT
from tests.helpers import free_port, process_env, wait_http


def _run_dev(env: dict[str, str]) -> tuple[int, str]:
    public, internal, realtime = free_port(), free_port(), free_port()
    env = env | {"PUBLIC_PORT": str(public), "INTERNAL_PORT": str(internal), "REALTIME_PORT": str(realtime)}
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
        assert wait_http(f"http://127.0.0.1:{realtime}/ready").json()["data"]["sockets"] == 0
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    for port in (public, internal, realtime):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
    return proc.returncode, out


def test_dev_runs_everything_with_given_servers(settings: Settings, tmp_path: Path) -> None:
    env = process_env(settings, DEV_DATA_DIR=str(tmp_path))
    del env["AUTH_JWT_SECRET"]  # dev makes its own and keeps it under the data dir
    code, out = _run_dev(env)
    assert code == 0, out
    assert "control center admin created: admin@halobestie.local / " in out
    assert (tmp_path / "jwt_secret").exists()
    ring = KeyRing.parse((tmp_path / "chat_keys").read_text())  # a real ring, not the published dev key
    assert ring.active == "dev-1" and len(ring.keys["dev-1"]) == 32
    assert "published development key" not in out
    code, out = _run_dev(env)
    assert code == 0, out
    assert "an admin already exists" in out


@pytest.mark.skipif(os.environ.get("SKIP_EMBEDDED") == "1", reason="SKIP_EMBEDDED=1")
def test_dev_starts_embedded_servers_when_urls_are_unset(tmp_path: Path) -> None:
    env = process_env(DEV_DATA_DIR=str(tmp_path / "dev"))
    del env["AUTH_JWT_SECRET"]
    code, out = _run_dev(env)
    assert code == 0, out
    assert "starting embedded PostgreSQL" in out and "starting embedded Valkey" in out
    assert "migrations: " in out
    assert (tmp_path / "dev" / "pg" / "PG_VERSION").exists()
