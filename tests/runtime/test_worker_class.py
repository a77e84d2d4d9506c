"""Graceful shutdown under both supported servers: SIGTERM under load loses no request."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from lib.config.env import Settings
from tests.conftest import PROJECT_ROOT, TEST_SECRET
from tests.helpers import free_port, wait_http


def _refused(exc: requests.ConnectionError) -> bool:
    """The connection was never accepted: nothing was in flight (a client or balancer retries)."""
    return "Connection refused" in str(exc) or "Errno 111" in str(exc)


@pytest.mark.parametrize("server", ["granian", "gunicorn"])
def test_sigterm_under_load_loses_no_request(settings: Settings, server: str) -> None:
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "AUTH_JWT_SECRET": TEST_SECRET,
        "APP_ENV": "test",
        "WEB_CONCURRENCY": "2",
        "LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "serve", "public", "--bind", f"127.0.0.1:{port}", "--server", server],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/ready"
    wait_http(url)
    outcomes: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        while True:
            try:
                code = str(requests.get(url, timeout=15, headers={"Connection": "close"}).status_code)
            except requests.ConnectionError as exc:
                if _refused(exc):
                    return
                code = f"lost: {exc!r}"
            with lock:
                outcomes.append(code)
            if code != "200":
                return

    threads = [threading.Thread(target=client) for _ in range(24)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=60)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert len(outcomes) > 50  # there was load when the signal came
    assert [o for o in outcomes if o != "200"] == []
