"""The CLI: create-cc-user (password from stdin, never echoed) and the direct-handler helper."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid

import bcrypt
import psycopg

from lib.services import Services
from lib.transcripts import KeyRing, Transcripts
from tests.chatflow import Chat
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
    assert row is not None
    assert row[0] == "operator"
    assert row[1].startswith("$2b$12$")
    assert bcrypt.checkpw(b"correct horse battery staple", row[1].encode())


def test_create_cc_user_refuses_weak_and_duplicate(database_url: str) -> None:
    weak = _run(["create-cc-user", "--email", "a@example.org", "--role", "admin", "--password", "short"], database_url)
    assert weak.returncode != 0
    assert "at least 12" in weak.stderr
    long_pw = "x" * 73
    too_long = _run(["create-cc-user", "--email", "a@example.org", "--role", "admin"], database_url, long_pw)
    assert too_long.returncode != 0
    assert "72 bytes" in too_long.stderr
    ok = _run(["create-cc-user", "--email", "a@example.org", "--role", "admin"], database_url, "y" * 20)
    assert ok.returncode == 0, ok.stderr
    dup = _run(["create-cc-user", "--email", "A@example.org", "--role", "admin"], database_url, "y" * 20)
    assert dup.returncode != 0
    assert "EMAIL_TAKEN" in dup.stderr


def test_handlers_can_be_called_directly(services: Services) -> None:
    assert call_handler(services, "GET /health") == {"status": "ok"}
    assert call_handler(services, "GET /ready")["database"] == "up"


def test_rotate_chat_key_survives_a_kill_and_finishes(chat: Chat, database_url: str) -> None:
    """Rows under an old key are re-sealed one per transaction; SIGKILL between lines loses none."""
    old, new = KeyRing.generate(f"o{uuid.uuid4().hex[:6]}"), KeyRing.generate(f"n{uuid.uuid4().hex[:6]}")
    services = chat.pay
    before = Transcripts(services.db, KeyRing.parse(old))
    session = {"id": chat.paired()[3]}
    ids = []
    for i in range(30):
        sealed = before.seal(str(session["id"]), f"pesan {i}")
        row = services.db.fetch_one(
            "INSERT INTO chat_messages (session_id, sender_type, sender_id, client_message_id, key_id, nonce, ciphertext) "
            "VALUES (%(s)s, 'customer', gen_random_uuid(), %(c)s, %(k)s, %(n)s, %(ct)s) RETURNING id",
            {
                "s": session["id"],
                "c": f"rot-{uuid.uuid4()}",
                "k": sealed.key_id,
                "n": sealed.nonce,
                "ct": sealed.ciphertext,
            },
        )
        assert row is not None
        ids.append(row["id"])
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": database_url,
        "LOG_FORMAT": "text",
        "CHAT_ENCRYPTION_KEYS": f"{new},{old}",
    }
    cmd = [sys.executable, "-m", "runtime", "rotate-chat-key", "--batch", "1"]
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert "re-sealed" in proc.stdout.readline(), proc.stderr.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    after = Transcripts(services.db, KeyRing.parse(f"{new},{old}"))
    rows = services.db.fetch_all("SELECT * FROM chat_messages WHERE id = ANY(%(ids)s)", {"ids": ids})
    under_new = [r for r in rows if str(r["key_id"]) == after.active_key_id()]
    assert 1 <= len(under_new) < 30  # stopped midway, every row readable
    assert sorted(after.open_row(r) for r in rows) == sorted(f"pesan {i}" for i in range(30))
    done = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "done:" in done.stdout
    assert KeyRing.parse(old).active not in done.stdout.rsplit("done:", 1)[1]
    rows = services.db.fetch_all("SELECT * FROM chat_messages WHERE id = ANY(%(ids)s)", {"ids": ids})
    assert {str(r["key_id"]) for r in rows} == {after.active_key_id()}
    assert new.split(":", 1)[1] not in done.stdout + done.stderr  # the key itself is never printed
