"""`make dev`: embedded servers when no URLs are set, migrate, seed an admin, run every process."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from lib.cc_users import any_admin_exists, create_cc_user
from lib.config.env import load_settings
from lib.db import Database
from lib.transcripts import KeyRing
from runtime import boot, migrate
from runtime.embedded import DEV_DIR, EmbeddedPostgres, EmbeddedValkey

# Processes `make dev` runs.
PROCESSES: dict[str, list[str]] = {
    "public": ["serve", "public"],
    "internal": ["serve", "internal"],
    "realtime": ["serve", "realtime"],
    "worker": ["worker"],
}
DEV_ADMIN_EMAIL = "admin@halobestie.local"


def _dev_secret(path: Path, make: Callable[[], str] = lambda: secrets.token_urlsafe(48)) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def _seed_dev_admin(database_url: str) -> None:
    db = Database(database_url, min_size=0, max_size=1, application_name="halobestie-dev")
    try:
        if any_admin_exists(db):
            print("control center: an admin already exists (python -m runtime create-cc-user adds more)")
            return
        password = os.environ.get("ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        email = os.environ.get("ADMIN_EMAIL") or DEV_ADMIN_EMAIL
        create_cc_user(db, email=email, password=password, role="admin", display_name="Dev admin")
        # Printed once, to the developer's terminal only; it is never logged or stored in clear.
        print(f"control center admin created: {email} / {password}  (shown only this once)")
    finally:
        db.close()


def run() -> int:
    env = dict(os.environ)
    env.setdefault("APP_ENV", "development")
    env.setdefault("LOG_FORMAT", "text")
    env.setdefault("WEB_CONCURRENCY", "1")
    env.setdefault("AUTH_JWT_SECRET", _dev_secret(DEV_DIR / "jwt_secret"))
    # The simulated gateway's callbacks (POST /internal/_test/payments/{id}/confirm) carry this token.
    env.setdefault("XENDIT_WEBHOOK_TOKEN", _dev_secret(DEV_DIR / "xendit_webhook_token"))
    # Transcripts are sealed under a ring of this checkout's own (kept, so they open after a restart).
    env.setdefault("CHAT_ENCRYPTION_KEYS", _dev_secret(DEV_DIR / "chat_keys", lambda: KeyRing.generate("dev-1")))
    stoppers: list[Callable[[], None]] = []
    if not env.get("DATABASE_URL"):
        print("DATABASE_URL unset: starting embedded PostgreSQL in .dev/pg ...", flush=True)
        pg = EmbeddedPostgres(DEV_DIR / "pg")
        env["DATABASE_URL"] = pg.ensure_database("halobestie")
        stoppers.append(pg.stop)
    if not env.get("REDIS_URL"):
        print("REDIS_URL unset: starting embedded Valkey ...", flush=True)
        vk = EmbeddedValkey(DEV_DIR / "valkey")
        env["REDIS_URL"] = vk.url
        stoppers.append(vk.stop)
    settings = load_settings(env)
    boot.init_process(settings)
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        applied = migrate.migrate(settings.require_database_url())
        print(f"migrations: {len(applied)} applied" + (f" ({', '.join(applied)})" if applied else ""))
        _seed_dev_admin(settings.require_database_url())
        for name, args in PROCESSES.items():
            # Own session: Ctrl-C reaches only this supervisor, which then stops children gracefully.
            proc = subprocess.Popen(
                [sys.executable, "-m", "runtime", *args], env=_metrics_port(env, name), start_new_session=True
            )
            children.append((name, proc))
        print(f"\npublic    http://127.0.0.1:{settings.public_port}  (apps: /api/...)")
        print(f"internal  http://{settings.internal_host}:{settings.internal_port}  (control center: /internal/...)")
        print(f"realtime  ws://127.0.0.1:{settings.realtime_port}/api/shared/ws  (WebSocket gateway)")
        print("worker    timers and sweeps (functions/jobs/)")
        print("Ctrl-C stops everything.\n", flush=True)
        return _supervise(children)
    finally:
        _stop(children, settings.graceful_timeout + 5)
        for stop in reversed(stoppers):
            stop()


def _metrics_port(env: dict[str, str], name: str) -> dict[str, str]:
    """METRICS_PORT, when set, is the first of four: one host cannot give every process the same port
    (the order of deploy/observability/prometheus.yml: public, internal, worker, realtime)."""
    base = int(env.get("METRICS_PORT") or 0)
    if not base:
        return env
    offset = {"public": 0, "internal": 1, "worker": 2, "realtime": 3}[name]
    return {**env, "METRICS_PORT": str(base + offset)}


def _supervise(children: list[tuple[str, subprocess.Popen[bytes]]]) -> int:
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stopping:
        for name, proc in children:
            if proc.poll() is not None:
                print(f"{name} exited with {proc.returncode}; stopping the rest", file=sys.stderr)
                return 1
        time.sleep(0.2)
    print("\nstopping ...", flush=True)
    return 0


def _stop(children: list[tuple[str, subprocess.Popen[bytes]]], grace: float) -> None:
    for _, proc in children:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for _, proc in children:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
