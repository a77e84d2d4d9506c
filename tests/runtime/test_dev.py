"""`python -m runtime dev` end to end, with given servers and with embedded ones."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from lib.config.env import Settings
from lib.transcripts import KeyRing
from tests.conftest import PROJECT_ROOT
from tests.helpers import free_port, process_env, wait_http
from tests.runtime.test_invoke import run_runtime


class Dev:
    """`python -m runtime dev` on free ports, its output read as it comes."""

    def __init__(self, env: dict[str, str]) -> None:
        self.public, self.internal, self.realtime = free_port(), free_port(), free_port()
        self.env = env | {
            "PUBLIC_PORT": str(self.public),
            "INTERNAL_PORT": str(self.internal),
            "REALTIME_PORT": str(self.realtime),
        }
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime", "dev"],
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((line for line in list(self.lines) if text in line), None)
            if found is not None:
                return found
            assert self.proc.poll() is None, "\n".join(self.lines)
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not printed:\n" + "\n".join(self.lines))

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=10)
        return self.proc.returncode, "\n".join(self.lines)


def _run_dev(env: dict[str, str], meanwhile: Callable[[Dev], None] = lambda dev: None) -> tuple[int, str]:
    dev = Dev(env)
    try:
        docs = dev.wait_for("ready: API docs at ")
        assert f"http://127.0.0.1:{dev.internal}/internal/docs" in docs
        assert wait_http(f"http://127.0.0.1:{dev.public}/ready", timeout=5).status_code == 200
        assert wait_http(f"http://127.0.0.1:{dev.internal}/internal/docs").status_code == 200
        assert wait_http(f"http://127.0.0.1:{dev.realtime}/ready").json()["data"]["sockets"] == 0
        meanwhile(dev)
    finally:
        code, out = dev.stop()
    for port in (dev.public, dev.internal, dev.realtime):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
    assert out.count("ready: API docs at ") == 1
    # every line of a child carries its name: a request error logged by each listener, the worker's start
    for name in ("public", "internal", "realtime", "worker"):
        assert re.search(rf"^{name} +\| ", out, re.MULTILINE), f"no {name} line in:\n{out}"
    return code, out


def _errors_on_each_listener(dev: Dev) -> None:
    """A 404 on each REST listener: logged (errors are), so each prints a line of its own."""
    for port in (dev.public, dev.internal):
        assert requests.get(f"http://127.0.0.1:{port}/nothing-here", timeout=5).status_code == 404


def test_dev_runs_everything_with_given_servers(settings: Settings, tmp_path: Path) -> None:
    env = process_env(settings, DEV_DATA_DIR=str(tmp_path))
    del env["AUTH_JWT_SECRET"]  # dev makes its own and keeps it under the data dir
    code, out = _run_dev(env, _errors_on_each_listener)
    assert code == 0, out
    assert "control center admin created: admin@halobestie.local / " in out
    assert (tmp_path / "jwt_secret").exists()
    ring = KeyRing.parse((tmp_path / "chat_keys").read_text())  # a real ring, not the published dev key
    assert ring.active == "dev-1"
    assert len(ring.keys["dev-1"]) == 32
    assert "published development key" not in out
    code, out = _run_dev(env)
    assert code == 0, out
    assert "an admin already exists" in out


@pytest.fixture
def dev_dir() -> Iterator[Path]:
    """Outside pytest's tmp directory, which any pytest process on the machine resets to 0700:
    the embedded PostgreSQL runs as its own user and must reach its data directory."""
    work = Path(tempfile.mkdtemp(prefix="hb-dev-"))
    work.chmod(0o755)
    yield work
    shutil.rmtree(work, ignore_errors=True)


@pytest.mark.skipif(os.environ.get("SKIP_EMBEDDED") == "1", reason="SKIP_EMBEDDED=1")
def test_dev_starts_embedded_servers_when_urls_are_unset(dev_dir: Path) -> None:
    env = process_env(DEV_DATA_DIR=str(dev_dir / "dev"))
    del env["AUTH_JWT_SECRET"]

    def invoke_beside(dev: Dev) -> None:
        """`invoke` with no URLs uses make dev's servers and leaves them running when it exits."""
        _errors_on_each_listener(dev)
        run = run_runtime("invoke", "GET", "/ready", env=env)
        assert run.returncode == 0, run.stderr
        assert run.stdout.startswith("200 OK")
        assert '"valkey": "up"' in run.stdout
        assert "using the embedded Valkey of make dev" in run.stderr
        assert requests.get(f"http://127.0.0.1:{dev.public}/ready", timeout=5).status_code == 200

    code, out = _run_dev(env, invoke_beside)
    assert code == 0, out
    assert "starting embedded PostgreSQL" in out
    assert "starting embedded Valkey" in out
    assert "migrations: " in out
    assert (dev_dir / "dev" / "pg" / "PG_VERSION").exists()
