"""Drive N concurrent chat sessions through pairing, messages and closing, against the public
listener (production gunicorn config) and a real worker, and print what it took.

    make bench-sessions                                # 1000 sessions
    make bench-sessions BENCH_ARGS="--sessions 200"

Figures: pairing throughput (paid -> searching -> accepted), message sends per second over REST,
and deadline lateness (from each deadline's due time to the worker firing it) for the session end
(active -> closing) and the goodbye grace (closing -> completed), with every session live at once.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import requests
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import public_server, servers  # noqa: E402
from lib.auth.sessions import start_session  # noqa: E402
from lib.auth.tokens import issue_access_token  # noqa: E402

WEBHOOK_TOKEN = secrets.token_urlsafe(24)


def users(db_url: str, secret: str, kind: str, count: int) -> list[tuple[str, str]]:
    """(id, access token) of `count` signed-in customers or mitras, made directly in the database."""
    made = []
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        for i in range(count):
            if kind == "mitra":
                row = conn.execute(
                    "INSERT INTO mitras (phone, display_name) VALUES (%(p)s, %(n)s) RETURNING id",
                    {"p": f"+62813{i:08d}", "n": f"Bestie {i}"},
                ).fetchone()
            else:
                row = conn.execute(
                    "INSERT INTO customers (display_name) VALUES (%(n)s) RETURNING id", {"n": f"C{i}"}
                ).fetchone()
            assert row is not None
            grant = start_session(conn, user_type=kind, user_id=str(row["id"]), ttl_days=1)
            token, _ = issue_access_token(
                secret, user_type=kind, user_id=grant.user_id, session_id=grant.session_id, ttl_seconds=7200
            )
            made.append((str(row["id"]), token))
    return made


@contextmanager
def worker(env: dict[str, str]) -> Iterator[None]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()


def parallel(fn: Callable[[Any], Any], items: list[Any], threads: int) -> tuple[list[Any], float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(fn, items))
    return results, time.perf_counter() - started


def lateness(db_url: str, sql: str) -> tuple[float, float, float, int]:
    """(p50, p99, max) in ms and the count, from a query yielding `late` intervals."""
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        row = conn.execute(
            f"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) AS p50, "  # noqa: S608 (our own constant SQL)
            f"percentile_cont(0.99) WITHIN GROUP (ORDER BY x) AS p99, max(x) AS worst, count(*) AS n "
            f"FROM (SELECT extract(epoch FROM late) * 1000 AS x FROM ({sql}) q) t"
        ).fetchone()
    assert row is not None
    return float(row["p50"] or 0), float(row["p99"] or 0), float(row["worst"] or 0), int(row["n"])


def wait_for(db_url: str, sql: str, want: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(db_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(sql).fetchone()
            if row and int(row[0]) >= want:
                return
            time.sleep(0.2)
    raise TimeoutError(sql)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--mitras", type=int, default=60)
    parser.add_argument("--messages", type=int, default=6, help="messages per session (half each side)")
    parser.add_argument("--spread", type=float, default=10.0, help="seconds over which the deadlines fall due")
    parser.add_argument("--threads", type=int, default=32, help="client threads")
    args = parser.parse_args()
    n, m = args.sessions, args.mitras
    secret = secrets.token_urlsafe(48)
    with servers() as (db_url, valkey_url):
        with psycopg.connect(db_url, autocommit=True) as conn:
            per_mitra = max(1, -(-n // m) + 2)
            conn.execute(
                "UPDATE app_config SET value = to_jsonb(%(v)s::int) WHERE key = 'max_customers_per_mitra'",
                {"v": min(20, per_mitra)},
            )
        if per_mitra > 20:
            sys.exit(f"--mitras {m} cannot hold {n} sessions at 20 each")
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "REDIS_URL": valkey_url,
            "AUTH_JWT_SECRET": secret,
            "APP_ENV": "test",
            "LOG_LEVEL": "WARNING",
            "XENDIT_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "DB_POOL_MAX": "20",
        }
        mitras = users(db_url, secret, "mitra", m)
        customers = users(db_url, secret, "customer", n)
        with public_server(env, {}) as url, worker(env):
            http = requests.Session()
            http.mount("http://", requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=args.threads))
            for _, token in mitras:
                http.post(
                    url + "/api/mitra/status/online", headers={"Authorization": f"Bearer {token}"}, timeout=10
                ).raise_for_status()
            tier = http.get(
                url + "/api/client/chat/pricing", headers={"Authorization": f"Bearer {customers[0][1]}"}, timeout=10
            )
            tier_id = tier.json()["data"]["modes"]["chat"][0]["id"]

            def pair(i: int) -> str:
                auth = {"Authorization": f"Bearer {customers[i][1]}"}
                body = {"mode": "chat", "tier_id": tier_id}
                created = http.post(url + "/api/client/payment-requests", headers=auth, json=body, timeout=30)
                created.raise_for_status()
                doc = created.json()["data"]
                callback = {
                    "id": "bench",
                    "external_id": doc["id"],
                    "status": "PAID",
                    "amount": doc["amount"],
                    "paid_amount": doc["amount"],
                    "currency": "IDR",
                }
                paid = http.post(
                    url + "/api/shared/payment/webhooks/xendit",
                    json=callback,
                    headers={"x-callback-token": WEBHOOK_TOKEN},
                    timeout=30,
                )
                paid.raise_for_status()
                polled = http.get(url + f"/api/client/payment-requests/{doc['id']}", headers=auth, timeout=30)
                session_id = polled.json()["data"]["session_id"]
                mitra = {"Authorization": f"Bearer {mitras[i % m][1]}"}
                accepted = http.post(url + f"/api/mitra/chat-requests/{session_id}/accept", headers=mitra, timeout=30)
                accepted.raise_for_status()
                return str(session_id)

            sessions, pairing_seconds = parallel(pair, list(range(n)), args.threads)

            def talk(item: tuple[int, int]) -> int:
                i, k = item
                token = customers[i][1] if k % 2 == 0 else mitras[i % m][1]
                sent = http.post(
                    url + f"/api/shared/chat/{sessions[i]}/messages",
                    headers={"Authorization": f"Bearer {token}"},
                    json={"client_message_id": str(uuid.uuid4()), "content": f"pesan {k}"},
                    timeout=30,
                )
                return sent.status_code

            sends = [(i, k) for k in range(args.messages) for i in range(n)]
            codes, message_seconds = parallel(talk, sends, args.threads)
            with psycopg.connect(db_url, autocommit=True) as conn:
                live = conn.execute("SELECT count(*) FROM chat_sessions WHERE status = 'active'").fetchone()
                # Every session's time runs out within the next `spread` seconds, all of them live until then.
                conn.execute(
                    "UPDATE chat_sessions SET expires_at = clock_timestamp() + interval '2 seconds' "
                    "+ make_interval(secs => random() * %(spread)s) WHERE status = 'active'",
                    {"spread": args.spread},
                )
            wait_for(db_url, "SELECT count(*) FROM chat_sessions WHERE status = 'closing'", n, args.spread + 30)
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute(
                    "UPDATE chat_sessions SET closing_expires_at = clock_timestamp() + interval '2 seconds' "
                    "+ make_interval(secs => random() * %(spread)s) WHERE status = 'closing'",
                    {"spread": args.spread},
                )
            wait_for(db_url, "SELECT count(*) FROM chat_sessions WHERE status = 'completed'", n, args.spread + 30)
        end = lateness(db_url, "SELECT ended_at - expires_at AS late FROM chat_sessions")
        grace = lateness(db_url, "SELECT completed_at - closing_expires_at AS late FROM chat_sessions")
    ok = sum(1 for c in codes if c == 201)
    print(f"\n{n} sessions, {m} mitras, {os.cpu_count()} CPUs; public listener (production config) + 1 worker\n")
    print(f"pairing (pay, confirm, accept):   {n / pairing_seconds:8.1f} sessions/s  ({pairing_seconds:.1f} s)")
    print(f"live at once before the clock:    {live[0] if live else 0:8d}")
    print(f"messages over REST:               {ok / message_seconds:8.1f} sent/s     ({ok} of {len(codes)} stored)")
    print(f"{'deadline lateness':33} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'fired':>7}")
    print(f"{'  session end (active->closing)':33} {end[0]:8.1f} {end[1]:8.1f} {end[2]:8.1f} {end[3]:7d}")
    print(f"{'  grace (closing->completed)':33} {grace[0]:8.1f} {grace[1]:8.1f} {grace[2]:8.1f} {grace[3]:7d}")


if __name__ == "__main__":
    main()
