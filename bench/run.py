"""Benchmark the public listener under its production gunicorn config with wrk on loopback.

    make bench                       # the hot endpoints, production config
    make bench BENCH_ARGS=--matrix   # /health under alternative gunicorn configs too

Prints a table; compare rows of one run only (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import requests
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime import migrate  # noqa: E402
from runtime.embedded import EmbeddedPostgres, EmbeddedValkey  # noqa: E402

BENCH_DB = "halobestie_bench"

# name -> gunicorn option overrides, on top of runtime.serve.gunicorn_options
VARIANTS: dict[str, dict[str, object]] = {
    "production (gthread, h1c parser)": {},
    "gthread, pure-Python parser": {"http_parser": "python"},
    "sync workers, h1c parser": {"worker_class": "sync"},
    "gthread, 4 workers x 4 threads": {"workers": 4, "threads": 4},
}


@dataclass
class Result:
    label: str
    path: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


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
def servers() -> Iterator[tuple[str, str]]:
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
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(BENCH_DB)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DB)))
        bench_url = make_conninfo(pg_url, dbname=BENCH_DB)
        migrate.migrate(bench_url)
        yield bench_url, valkey_url
    finally:
        for s in reversed(stop):
            s()
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def public_server(env: dict[str, str], overrides: dict[str, object]) -> Iterator[str]:
    port = free_port()
    code = (
        "import json, sys; from lib.config.env import settings; from runtime import boot; "
        "from runtime.serve import serve; s = settings(); boot.init_process(s); "
        "serve('public', s, bind=sys.argv[1], overrides=json.loads(sys.argv[2]))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, f"127.0.0.1:{port}", json.dumps(overrides)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url + "/health", timeout=1)
                break
            except requests.RequestException:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()


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


def mitra_token(db_url: str, secret: str) -> str:
    """A signed-in mitra, made directly in the bench database."""
    from psycopg.rows import dict_row

    from lib.auth.sessions import start_session
    from lib.auth.tokens import issue_access_token

    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        row = conn.execute(
            "INSERT INTO mitras (phone, display_name) VALUES ('+6281299999999', 'Bench') "
            "ON CONFLICT (phone) DO UPDATE SET is_active = true RETURNING id"
        ).fetchone()
        assert row is not None
        grant = start_session(conn, user_type="mitra", user_id=str(row["id"]), ttl_days=1)
    token, _ = issue_access_token(
        secret, user_type="mitra", user_id=grant.user_id, session_id=grant.session_id, ttl_seconds=3600
    )
    return token


def endpoints(url: str, db_url: str, secret: str) -> list[tuple[str, str, dict[str, str], str]]:
    """(label, path, headers, method) of the endpoints to measure; hot endpoints join as issues land."""
    pair = requests.post(url + "/api/shared/auth/anonymous", json={}, timeout=5).json()["data"]
    customer = {"Authorization": f"Bearer {pair['access_token']}"}
    mitra = {"Authorization": f"Bearer {mitra_token(db_url, secret)}"}
    requests.post(url + "/api/mitra/status/online", headers=mitra, timeout=5).raise_for_status()
    return [
        ("health", "/health", {}, "GET"),
        ("no auth, no I/O", "/api/shared/auth-providers", {}, "GET"),
        ("customer token + 1 query", "/api/client/me", customer, "GET"),
        ("availability poll", "/api/client/mitra-availability", customer, "GET"),
        ("mitra heartbeat", "/api/mitra/status/heartbeat", mitra, "POST"),
    ]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=8, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--matrix", action="store_true", help="also /health under alternative configs")
    args = parser.parse_args()
    wrk = ensure_wrk()
    results: list[Result] = []
    with servers() as (db_url, valkey_url):
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "REDIS_URL": valkey_url,
            "AUTH_JWT_SECRET": secrets.token_urlsafe(48),
            "APP_ENV": "test",
            "LOG_LEVEL": "INFO",  # as in production; DEBUG (a line per request) is measured below
        }
        variants = VARIANTS if args.matrix else {"production (gthread, h1c parser)": {}}
        for label, overrides in variants.items():
            with public_server(env, overrides) as url:
                todo: list[tuple[str, str, dict[str, str], str]] = [("health", "/health", {}, "GET")]
                if not overrides:
                    todo = endpoints(url, db_url, env["AUTH_JWT_SECRET"])
                for name, path, headers, method in todo:
                    run_wrk(wrk, url + path, 2, args.connections, headers, method)  # warm-up
                    rps, p50, p99, errors = run_wrk(wrk, url + path, args.duration, args.connections, headers, method)
                    results.append(Result(f"{label}", f"{method} {path} ({name})", rps, p50, p99, errors))
        with public_server({**env, "LOG_LEVEL": "DEBUG"}, {}) as url:
            run_wrk(wrk, url + "/health", 2, args.connections, {})
            rps, p50, p99, errors = run_wrk(wrk, url + "/health", args.duration, args.connections, {})
            results.append(Result("LOG_LEVEL=DEBUG (line per request)", "GET /health (health)", rps, p50, p99, errors))
    print(f"\nwrk -t2 -c{args.connections} -d{args.duration}s on loopback; {os.cpu_count()} CPUs\n")
    print(f"{'config':36} {'endpoint':58} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for r in results:
        print(f"{r.label:36} {r.path:58} {r.rps:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {r.errors:7d}")
    base = next(r.rps for r in results if r.path.startswith("GET /health"))
    print("\nratio to /health (production config):")
    for r in results:
        print(f"  {r.label:36} {r.path:58} {r.rps / base:6.2f}")
    print("\nauthenticate step, in-process (one core):")
    print("\n".join(auth_microbench()))


if __name__ == "__main__":
    main()
