"""The CLI: create-cc-user (password from stdin, never echoed) and the direct-handler helper."""

from __future__ import annotations

import subprocess
import sys

import bcrypt
import psycopg

from lib.services import Services
from runtime import probes
from tests.conftest import PROJECT_ROOT
from tests.helpers import call_handler


def _run(args: list[str], database_url: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args],
        cwd=PROJECT_ROOT,
        input=stdin,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": database_url, "LOG_FORMAT": "text"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_create_cc_user_reads_password_from_stdin(database_url: str) -> None:
    run = _run(
        ["create-cc-user", "--email", "Ops@Example.org", "--role", "operator"],
        database_url,
        "correct horse battery staple\n",
    )
    assert run.returncode == 0, run.stderr
    assert "created operator ops@example.org" in run.stdout
    assert "correct horse" not in run.stdout + run.stderr
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT role, password_hash FROM cc_users WHERE email = 'ops@example.org'").fetchone()
    assert row is not None and row[0] == "operator"
    assert row[1].startswith("$2b$12$")
    assert bcrypt.checkpw(b"correct horse battery staple", row[1].encode())


def test_create_cc_user_refuses_weak_and_duplicate(database_url: str) -> None:
    weak = _run(["create-cc-user", "--email", "a@example.org", "--role", "admin", "--password", "short"], database_url)
    assert weak.returncode != 0
    assert "at least 12" in weak.stderr
    long_pw = "x" * 73
    too_long = _run(["create-cc-user", "--email", "a@example.org", "--role", "admin"], database_url, long_pw)
    assert too_long.returncode != 0 and "72 bytes" in too_long.stderr
    ok = _run(["create-cc-user", "--email", "a@example.org", "--role", "admin"], database_url, "y" * 20)
    assert ok.returncode == 0, ok.stderr
    dup = _run(["create-cc-user", "--email", "A@example.org", "--role", "admin"], database_url, "y" * 20)
    assert dup.returncode != 0 and "EMAIL_TAKEN" in dup.stderr


def test_handlers_can_be_called_directly(services: Services) -> None:
    assert call_handler(probes.health, services) == {"status": "ok"}
    assert call_handler(probes.ready, services)["database"] == "up"
