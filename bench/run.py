"""The hot endpoints of the public listener, side by side with the Fastify peer, with wrk on loopback.

    make bench                       # production (granian) and gunicorn, and the peer, at -c64 and -c256
    make bench BENCH_ARGS=--matrix   # also the alternative server configs (granian threads, gunicorn classes)
    make bench BENCH_ARGS="--only 'chat/active, live' --configs production --rounds 3"

bench/peer/ is a two-process Fastify 5 cluster doing the same work as the endpoint it is paired
with (see its server.js); without Node.js it is skipped with a line saying so. Every server of the
run is up at once and measured back to back per endpoint, in alternating order over --rounds
(medians printed). Prints one table per connection count, with each server's own CPU time per
request; compare rows of one run only (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import requests
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime import migrate  # noqa: E402
from runtime.embedded import EmbeddedPostgres, EmbeddedValkey  # noqa: E402

BENCH_DB = "halobestie_bench"  # --db names another, so two runs on one PostgreSQL do not drop each other's

# label -> (server, option overrides on top of runtime.serve's production options)
CONFIGS: dict[str, tuple[str, dict[str, object]]] = {
    "granian 2x8 (production)": ("granian", {}),
    "gunicorn gthread 2x8": ("gunicorn", {}),
}
MATRIX: dict[str, tuple[str, dict[str, object]]] = {
    "granian 2x1": ("granian", {"blocking_threads": 1}),
    "granian 2x2": ("granian", {"blocking_threads": 2}),
    "granian 2x4": ("granian", {"blocking_threads": 4}),
    "granian 2x16": ("granian", {"blocking_threads": 16}),
    "granian 3x8": ("granian", {"workers": 3}),
    "granian 3x4": ("granian", {"workers": 3, "blocking_threads": 4}),
    "granian 4x2": ("granian", {"workers": 4, "blocking_threads": 2}),
    "granian 3x1": ("granian", {"workers": 3, "blocking_threads": 1}),
    "granian 4x1": ("granian", {"workers": 4, "blocking_threads": 1}),
    "granian 3x2": ("granian", {"workers": 3, "blocking_threads": 2}),
    "granian 2x8, 2 runtime threads": ("granian", {"runtime_threads": 2}),
    "gunicorn sync x2": ("gunicorn", {"worker_class": "sync"}),
    "gunicorn gthread 4x4": ("gunicorn", {"workers": 4, "threads": 4}),
}


# The paid request of the customer in a live session: what the waiting screen polls (API.md).
PAID = str(uuid.uuid4())


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str
    token: str | None  # "customer" | "mitra"
    peer: str  # the Fastify route doing the same work


ENDPOINTS = (
    Endpoint("health (fixed JSON)", "GET", "/health", None, "/health"),
    Endpoint("me (token + 1 row)", "GET", "/api/client/me", "customer", "/me"),
    Endpoint("availability (token, memory)", "GET", "/api/client/mitra-availability", "customer", "/jwt"),
    Endpoint("heartbeat (token + Valkey)", "POST", "/api/mitra/status/heartbeat", "mitra", "/heartbeat"),
    Endpoint("chat/active, idle (token, memory)", "GET", "/api/client/chat/active", "customer", "/jwt"),
    Endpoint("chat/active, live (token + 1 query)", "GET", "/api/client/chat/active", "chatting", "/me"),
    Endpoint("payment poll (token, kept row)", "GET", f"/api/client/payment-requests/{PAID}", "chatting", "/me"),
)


@dataclass
class Result:
    config: str
    endpoint: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float  # the server's processes' CPU time (user + system) per request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk (Debian package) ...", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL)
        found = shutil.which("wrk")
    if not found:
        sys.exit("wrk is needed: apt-get install wrk")
    return found


@contextmanager
def servers(db_name: str = BENCH_DB) -> Iterator[tuple[str, str]]:
    """(database url, valkey url): from the environment, or embedded under a temp dir."""
    stop = []
    pg_url, valkey_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    tmp = Path(tempfile.mkdtemp(prefix="hb-bench-"))
    if not pg_url:
        pg = EmbeddedPostgres(tmp / "pg")
        pg_url = pg.url()
        stop.append(pg.stop)
    if not valkey_url:
        vk = EmbeddedValkey(tmp / "valkey")
        valkey_url = vk.url
        stop.append(vk.stop)
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name)))
        bench_url = make_conninfo(pg_url, dbname=db_name)
        migrate.migrate(bench_url)
        yield bench_url, valkey_url
    finally:
        for s in reversed(stop):
            s()
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def running(cmd: list[str], env: dict[str, str], url: str, cwd: Path = ROOT) -> Iterator[str]:
    """Start a server process, wait for its /health, stop it with SIGTERM."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url + "/health", timeout=1)
                break
            except requests.RequestException:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{cmd} did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def public_server(
    env: dict[str, str], overrides: dict[str, object], server: str = "gunicorn", tree: Path = ROOT
) -> Iterator[str]:
    """The public listener under its production config (with option overrides), from the code in
    `tree` (this checkout, or another one's to compare with)."""
    port = free_port()
    code = (
        "import json, sys; from lib.config.env import settings; from runtime import boot; "
        "from runtime.serve import serve; s = settings(); boot.init_process(s); "
        "serve('public', s, bind=sys.argv[1], "
        "overrides=json.loads(sys.argv[2]), server=sys.argv[3])"
    )
    cmd = [sys.executable, "-c", code, f"127.0.0.1:{port}", json.dumps(overrides), server]
    with running(cmd, env, f"http://127.0.0.1:{port}", cwd=tree) as url:
        yield url


PEER_DIR = ROOT / "bench" / "peer"


def node_peer_ready() -> str | None:
    """The path of `node` with bench/peer/'s packages installed, or None (with a line saying why)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        print("Fastify peer skipped: Node.js/npm not installed (ratios are printed only with it)")
        return None
    if not (PEER_DIR / "node_modules").exists():
        print("installing the Fastify peer (npm ci in bench/peer) ...", flush=True)
        subprocess.run([npm, "ci", "--silent", "--no-audit", "--no-fund"], cwd=PEER_DIR, check=True)
    return node


def node_peer_env(env: dict[str, str], port: int) -> dict[str, str]:
    """`env` for a bench/peer process: node-postgres wants a URL, not key=value pairs."""
    c = conninfo_to_dict(env["DATABASE_URL"])
    host, port_, user = c.get("host", "127.0.0.1"), c.get("port", 5432), c.get("user", "postgres")
    if str(host).startswith("/"):  # a socket directory (the embedded server): node-postgres takes it as ?host=
        db = f"postgresql://{user}:{c.get('password', '')}@/{c['dbname']}?host={host}&port={port_}"
    else:
        db = f"postgresql://{user}:{c.get('password', '')}@{host}:{port_}/{c['dbname']}"
    return {**env, "PORT": str(port), "DATABASE_URL": db}


@contextmanager
def fastify_peer(env: dict[str, str]) -> Iterator[str | None]:
    """The two-process Fastify cluster of bench/peer/, or None (with a line saying why) without Node."""
    node = node_peer_ready()
    if node is None:
        yield None
        return
    port = free_port()
    with running([node, "server.js"], node_peer_env(env, port), f"http://127.0.0.1:{port}", cwd=PEER_DIR) as url:
        yield url


def _descendants(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        kids = [int(k) for t in tasks for k in Path(f"/proc/{pid}/task/{t}/children").read_text().split()]
    except OSError:
        return []
    return kids + [d for k in kids for d in _descendants(k)]


def server_pids(url: str) -> list[int]:
    """The processes listening on url's port (granian's workers, Node's primary) and their children."""
    port = url.rsplit(":", 1)[1]
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    listening = {int(p) for p in re.findall(r"pid=(\d+)", out)}
    return sorted(listening | {d for p in listening for d in _descendants(p)})


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (all their threads), from /proc."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(
    wrk: str, url: str, duration: int, connections: int, headers: dict[str, str], method: str = "GET"
) -> tuple[float, float, float, int]:
    args = [wrk, "-t2", f"-c{connections}", f"-d{duration}s", "--latency"]
    if method != "GET":
        script = Path(tempfile.gettempdir()) / f"hb-bench-{method.lower()}.lua"
        script.write_text(f'wrk.method = "{method}"\n')
        args += ["-s", str(script)]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    p50 = _ms(*re.match(r"([\d.]+)(\w+)", lat["50"]).groups())  # type: ignore[union-attr]
    p99 = _ms(*re.match(r"([\d.]+)(\w+)", lat["99"]).groups())  # type: ignore[union-attr]
    errs = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(errs.group(1)) if errs else 0
    if socket_errs:
        errors += sum(int(x) for x in socket_errs.groups())
    return rps, p50, p99, errors


def signed_in(db_url: str, secret: str, user_type: str, insert: str) -> tuple[str, str]:
    """(id, access token) of a user made by `insert` (returning id) and signed in, directly in the
    bench database: POST /api/shared/auth/anonymous is rate-limited per IP (in Valkey, for an hour),
    so runs after the first few in an hour failed there."""
    from psycopg.rows import dict_row

    from lib.auth.sessions import start_session
    from lib.auth.tokens import issue_access_token

    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        row = conn.execute(insert).fetchone()
        assert row is not None
        grant = start_session(conn, user_type=user_type, user_id=str(row["id"]), ttl_days=1)
    token, _ = issue_access_token(
        secret, user_type=user_type, user_id=grant.user_id, session_id=grant.session_id, ttl_seconds=3600
    )
    return grant.user_id, token


def tokens(url: str, db_url: str, secret: str) -> dict[str, dict[str, str]]:
    """Authorization headers of a fresh customer, of one in a live session (whose chat/active is
    always read from PostgreSQL, and who has a paid request) and of an online mitra."""
    _, customer = signed_in(db_url, secret, "customer", "INSERT INTO customers DEFAULT VALUES RETURNING id")
    chatting_id, chatting = signed_in(db_url, secret, "customer", "INSERT INTO customers DEFAULT VALUES RETURNING id")
    mitra_id, token = signed_in(
        db_url,
        secret,
        "mitra",
        "INSERT INTO mitras (phone, display_name) VALUES ('+6281299999999', 'Bench') "
        "ON CONFLICT (phone) DO UPDATE SET is_active = true RETURNING id",
    )
    mitra = {"Authorization": f"Bearer {token}"}
    requests.post(url + "/api/mitra/status/online", headers=mitra, timeout=5).raise_for_status()
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "WITH s AS (INSERT INTO chat_sessions (customer_id, mitra_id, status, duration_minutes, started_at, "
            "expires_at) VALUES (%(c)s, %(m)s, 'active', 60, now(), now() + interval '1 hour') RETURNING id) "
            "INSERT INTO payment_requests (id, customer_id, mode, tier_id, minutes, price, amount, status, "
            "expires_at, confirmed_at, session_id) "
            "SELECT %(p)s, %(c)s, 'chat', t.id, t.minutes, t.price, t.price, 'confirmed', now() + interval '1 hour', "
            "now(), s.id FROM s, pricing_tiers t WHERE t.mode = 'chat' ORDER BY t.minutes LIMIT 1",
            {"c": chatting_id, "m": mitra_id, "p": PAID},
        )
    return {
        "customer": {"Authorization": f"Bearer {customer}"},
        "chatting": {"Authorization": f"Bearer {chatting}"},
        "mitra": mitra,
    }


def measure(
    wrk: str, url: str, path: str, method: str, headers: dict[str, str], connections: int, duration: int
) -> tuple[float, float, float, int, float]:
    """req/s, p50, p99, errors, and the server's CPU microseconds per request."""
    run_wrk(wrk, url + path, 1, connections, headers, method)  # warm-up: pools, caches, JIT of V8
    pids = server_pids(url)
    before = cpu_seconds(pids)
    rps, p50, p99, errors = run_wrk(wrk, url + path, duration, connections, headers, method)
    cpu = cpu_seconds(pids) - before
    return rps, p50, p99, errors, cpu * 1e6 / max(1.0, rps * duration)


PEER = "Fastify cluster x2"


def median_result(results: list[Result]) -> Result | None:
    """The median of each figure over rounds (errors: their sum)."""
    if not results:
        return None
    first = results[0]
    return Result(
        first.config,
        first.endpoint,
        first.connections,
        statistics.median(r.rps for r in results),
        statistics.median(r.p50_ms for r in results),
        statistics.median(r.p99_ms for r in results),
        sum(r.errors for r in results),
        statistics.median(r.cpu_us for r in results),
    )


def auth_microbench() -> list[str]:
    """The authenticate step alone, in-process: first verification and the cached path."""
    import timeit

    from lib.auth.tokens import APP_AUDIENCE, VerifiedTokens, issue_access_token, verify_access_token

    secret = secrets.token_urlsafe(48)
    token, _ = issue_access_token(secret, user_type="customer", user_id="u", session_id="s", ttl_seconds=3600)
    cache = VerifiedTokens(secret)
    n = 20000
    full = timeit.timeit(lambda: verify_access_token(token, secret, APP_AUDIENCE), number=n) / n * 1e6
    cached = timeit.timeit(lambda: cache.verify(token, APP_AUDIENCE), number=n) / n * 1e6
    return [
        f"  JWT verification (first request of a token): {full:7.1f} us",
        f"  cached token (every later request):          {cached:7.1f} us",
    ]


def sealing_microbench(db_url: str, valkey_url: str) -> list[str]:
    """The message send (lib.chat.messages.send: one statement, then the event) in-process, with
    the AES-GCM seal and with an identity "seal" writing the same row shape, interleaved."""
    import timeit

    from lib.chat.messages import send
    from lib.config.env import load_settings
    from lib.principal import Principal
    from lib.transcripts import KeyRing, Sealed, Transcripts
    from runtime.container import build_services

    class Unsealed(Transcripts):
        def seal(self, session_id: str, text: str) -> Sealed:
            return Sealed(self.active_key_id(), b"", text.encode())

    svc = build_services(load_settings({"DATABASE_URL": db_url, "REDIS_URL": valkey_url, "APP_ENV": "test"}))
    try:
        row = svc.db.fetch_one(
            "WITH c AS (INSERT INTO customers DEFAULT VALUES RETURNING id) INSERT INTO chat_sessions "
            "(customer_id, status, started_at, expires_at) SELECT id, 'active', now(), now() + interval '1 day' "
            "FROM c RETURNING id, customer_id"
        )
        assert row is not None
        who = Principal(user_type="customer", user_id=str(row["customer_id"]), session_id="bench")
        ring = KeyRing.parse(KeyRing.generate("bench"))
        variants = {"sealed": Transcripts(svc.db, ring), "unsealed": Unsealed(svc.db, ring)}
        events = svc.chat_events
        text = "Aku cuma mau cerita, akhir-akhir ini susah tidur dan kepikiran terus. " * 3
        n, rounds = 200, 10
        took: dict[str, list[float]] = {name: [] for name in variants}
        counter = iter(range(10**9))

        def one(transcripts: Transcripts) -> None:
            send(svc.db, events, transcripts, who, str(row["id"]), f"m-{next(counter)}", text)

        for r in range(rounds):
            for name in sorted(variants, reverse=bool(r % 2)):  # alternate which goes first
                took[name].append(timeit.timeit(functools.partial(one, variants[name]), number=n) / n * 1e6)
        median = {name: statistics.median(v) for name, v in took.items()}
        seal_only = timeit.timeit(lambda: variants["sealed"].seal(str(row["id"]), text), number=20000) / 20000 * 1e6
    finally:
        svc.close()
    overhead = (median["sealed"] - median["unsealed"]) / median["unsealed"] * 100
    return [
        f"  send with the AES-256-GCM seal:  {median['sealed']:7.1f} us  (median of {rounds} rounds of {n})",
        f"  send without (same row shape):   {median['unsealed']:7.1f} us",
        f"  difference:                      {overhead:6.1f} %  (the send's own noise is larger than the seal)",
        f"  the seal alone:                  {seal_only:7.1f} us  = {seal_only / median['unsealed'] * 100:.1f} % of a send"
        f" ({len(text)} chars)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    parser.add_argument("--connections", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--matrix", action="store_true", help="also the alternative server configs")
    parser.add_argument("--only", nargs="+", metavar="TEXT", help="only the endpoints whose name contains TEXT")
    parser.add_argument("--configs", nargs="+", metavar="TEXT", help="only the configs whose label contains TEXT")
    parser.add_argument("--db", default=BENCH_DB, help="the database made (and dropped first) for the run")
    parser.add_argument("--rounds", type=int, default=1, help="measure everything N times, print medians")
    parser.add_argument(
        "--baseline", type=Path, metavar="DIR", help="also the production config from another checkout (git worktree)"
    )
    args = parser.parse_args()
    endpoints = [e for e in ENDPOINTS if not args.only or any(t in e.name for t in args.only)]
    wrk = ensure_wrk()
    samples: dict[tuple[str, str, int], list[Result]] = collections.defaultdict(list)
    with servers(args.db) as (db_url, valkey_url), ExitStack() as up:
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "REDIS_URL": valkey_url,
            "AUTH_JWT_SECRET": secrets.token_urlsafe(48),
            "APP_ENV": "test",
            "LOG_LEVEL": "INFO",  # as in production
        }
        configs = {
            label: config
            for label, config in {**CONFIGS, **(MATRIX if args.matrix else {})}.items()
            if not args.configs or any(t in label for t in args.configs)
        }
        # Every server is up for the whole run, so each round can measure them one after the other
        # in alternating order: the machine's load drifts, and neighbours in time share it.
        targets = {
            label: up.enter_context(public_server(env, overrides, server))
            for label, (server, overrides) in configs.items()
        }
        if args.baseline:  # the same production config, from the code of another checkout
            targets[f"{args.baseline.name}: production"] = up.enter_context(
                public_server(env, {}, "granian", args.baseline.resolve())
            )
        headers = tokens(next(iter(targets.values())), db_url, env["AUTH_JWT_SECRET"])
        peer_url = up.enter_context(fastify_peer(env))
        if peer_url:
            targets[PEER] = peer_url
        for r in range(args.rounds):
            order = list(targets.items()) if r % 2 == 0 else list(targets.items())[::-1]
            for c in args.connections:
                for e in endpoints:
                    h = headers[e.token] if e.token else {}
                    for label, url in order:
                        path = e.peer if label == PEER else e.path
                        rps, p50, p99, errs, cpu = measure(wrk, url, path, e.method, h, c, args.duration)
                        samples[(label, e.name, c)].append(Result(label, e.name, c, rps, p50, p99, errs, cpu))
        sealing = [] if args.only else sealing_microbench(db_url, valkey_url)  # while the servers still run
    rounds = f", median of {args.rounds} rounds in alternating order" if args.rounds > 1 else ", one run"
    print(f"\nwrk -t2 -d{args.duration}s on loopback{rounds}; {os.cpu_count()} CPUs shared by server and wrk")
    print("CPU: the server's processes' user + system time per request (PostgreSQL's and wrk's not included)")
    for c in args.connections:
        print(f"\n-c{c}")
        print(
            f"{'endpoint':36} {'config':31} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'CPU us':>7}"
            f" {'vs Fastify':>10}"
        )
        for e in endpoints:
            ref = median_result(samples.get((PEER, e.name, c), []))
            for label in targets:
                row = median_result(samples[(label, e.name, c)])
                if row is None:
                    continue
                ratio = f"{row.rps / ref.rps:9.2f}x" if ref and ref.rps else "         -"
                name = f"  Fastify {e.peer}" if label == PEER else e.name
                print(
                    f"{name:36} {label:31} {row.rps:8.0f} {row.p50_ms:7.2f} {row.p99_ms:7.2f} {row.errors:6d}"
                    f" {row.cpu_us:7.0f} {ratio}"
                )
    if sealing:  # the in-process measurements belong to a full run, not to one endpoint's
        print("\nauthenticate step, in-process (one core):")
        print("\n".join(auth_microbench()))
        print("\nmessage send, in-process, one PostgreSQL statement + the event on Valkey:")
        print("\n".join(sealing))


if __name__ == "__main__":
    main()
