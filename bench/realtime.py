"""The WebSocket gateway under load: idle sockets held open, then active chat pairs.

    make bench-realtime                                   # 10,000 idle sockets, 1,000 pairs at 1 msg/s
    make bench-realtime BENCH_ARGS="--idle 2000 --pairs 200"

Serves `runtime.realtime:app` under its production gunicorn config (WEB_CONCURRENCY=2: one gateway
process pair) and drives it from one asyncio client process on the same machine. Figures: memory
per idle socket (the gateway processes' RSS before and after) and their CPU while idle, then the
end-to-end latency of messages (customer sends `message.send`, the mitra's socket receives
`message.new`) at one message per second per pair.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import requests
import websockets
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import free_port, servers  # noqa: E402
from lib.auth.sessions import start_session  # noqa: E402
from lib.auth.tokens import issue_access_token  # noqa: E402


def tokens(db_url: str, secret: str, kind: str, count: int) -> list[tuple[str, str]]:
    """(id, access token) of `count` signed-in users, made in one transaction."""
    made = []
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        if kind == "mitra":
            rows = conn.execute(
                "INSERT INTO mitras (phone, display_name) SELECT '+62814' || lpad(g::text, 8, '0'), 'B' || g "
                "FROM generate_series(1, %(n)s) g RETURNING id",
                {"n": count},
            ).fetchall()
        else:
            rows = conn.execute(
                "INSERT INTO customers (display_name) SELECT 'C' || g FROM generate_series(1, %(n)s) g RETURNING id",
                {"n": count},
            ).fetchall()
        for row in rows:
            grant = start_session(conn, user_type=kind, user_id=str(row["id"]), ttl_days=1)
            token, _ = issue_access_token(
                secret, user_type=kind, user_id=grant.user_id, session_id=grant.session_id, ttl_seconds=7200
            )
            made.append((str(row["id"]), token))
    return made


def live_sessions(db_url: str, customers: list[tuple[str, str]], mitras: list[tuple[str, str]]) -> list[str]:
    """An active session per customer, spread over the mitras."""
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        rows = conn.execute(
            "INSERT INTO chat_sessions (customer_id, mitra_id, status, duration_minutes, started_at, expires_at) "
            "SELECT c, m, 'active', 60, now(), now() + interval '1 hour' "
            "FROM unnest(%(c)s::uuid[], %(m)s::uuid[]) AS t(c, m) RETURNING id",
            {"c": [c for c, _ in customers], "m": [mitras[i % len(mitras)][0] for i in range(len(customers))]},
        ).fetchall()
    return [str(r["id"]) for r in rows]


@contextmanager
def gateway(env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "serve", "realtime", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise RuntimeError("gateway did not start") from None
                time.sleep(0.1)
        yield f"ws://127.0.0.1:{port}/api/shared/ws", proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def workers_of(master: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


async def open_socket(url: str, token: str, session_id: str | None = None) -> Any:
    ws = await websockets.connect(url, open_timeout=30, max_size=2**20, ping_interval=None)
    await ws.send(json.dumps({"type": "auth", "token": token, **({"session_id": session_id} if session_id else {})}))
    first = json.loads(await ws.recv())
    if first["type"] != "auth.ok":
        raise RuntimeError(first)
    return ws


async def open_many(url: str, items: list[tuple[str, str | None]], at_once: int = 200) -> list[Any]:
    opened: list[Any] = []
    for i in range(0, len(items), at_once):
        batch = items[i : i + at_once]
        opened += await asyncio.gather(*(open_socket(url, token, session) for token, session in batch))
    return opened


async def idle_phase(url: str, users: list[tuple[str, str]], pids: list[int], idle_seconds: float) -> dict[str, float]:
    before = rss_bytes(pids)
    started = time.perf_counter()
    sockets = await open_many(url, [(token, None) for _, token in users])
    opened_in = time.perf_counter() - started
    await asyncio.sleep(12)  # past one presence refresh, so its cost is in the idle figure
    after = rss_bytes(pids)
    cpu0, t0 = cpu_seconds(pids), time.perf_counter()
    await asyncio.sleep(idle_seconds)
    cpu1, t1 = cpu_seconds(pids), time.perf_counter()
    await asyncio.gather(*(ws.close() for ws in sockets))
    return {
        "sockets": len(sockets),
        "opened_per_second": len(sockets) / opened_in,
        "rss_before_mb": before / 2**20,
        "rss_after_mb": after / 2**20,
        "kb_per_socket": (after - before) / len(sockets) / 1024,
        "idle_cpu_percent": (cpu1 - cpu0) / (t1 - t0) * 100,
    }


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return float(sum(fields) - idle), float(sum(fields))


async def active_phase(
    url: str, pairs: list[tuple[str, str, str]], seconds: float, rate: float, pids: list[int]
) -> dict[str, float]:
    """Each pair: (customer token, mitra token, session id). Customers send `rate` msg/s each."""
    customers = await open_many(url, [(c, s) for c, _, s in pairs])
    mitras = await open_many(url, [(m, s) for _, m, s in pairs])
    cpu0, (busy0, total0), client0 = cpu_seconds(pids), machine_busy(), own_cpu_seconds()
    latencies: list[float] = []
    sent = 0
    stop = time.perf_counter() + seconds

    async def listen(ws: Any) -> None:
        try:
            async for raw in ws:
                frame = json.loads(raw)
                if frame["type"] == "message.new":
                    latencies.append(time.perf_counter() - float(frame["data"]["content"]))
        except websockets.ConnectionClosed:
            pass

    async def drain(ws: Any) -> None:  # the sender's own acks (message.sent)
        try:
            async for _ in ws:
                pass
        except websockets.ConnectionClosed:
            pass

    async def talk(ws: Any, offset: float) -> None:
        nonlocal sent
        await asyncio.sleep(offset)
        n = 0
        while time.perf_counter() < stop:
            await ws.send(
                json.dumps({"type": "message.send", "client_message_id": f"m{n}", "content": repr(time.perf_counter())})
            )
            sent += 1
            n += 1
            await asyncio.sleep(1.0 / rate)

    listeners = [asyncio.create_task(listen(ws)) for ws in mitras] + [
        asyncio.create_task(drain(ws)) for ws in customers
    ]
    await asyncio.gather(*(talk(ws, i / len(customers) / rate) for i, ws in enumerate(customers)))
    cpu1, (busy1, total1), client1 = cpu_seconds(pids), machine_busy(), own_cpu_seconds()
    await asyncio.sleep(3)  # let the last ones arrive
    for ws in customers + mitras:
        await ws.close()
    for task in listeners:
        task.cancel()
    latencies.sort()
    return {
        "sent": sent,
        "received": len(latencies),
        "per_second": len(latencies) / seconds,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else 0.0,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else 0.0,
        "max_ms": latencies[-1] * 1000 if latencies else 0.0,
        "gateway_cpu_ms_per_message": (cpu1 - cpu0) * 1000 / max(1, sent),
        "client_cpu_ms_per_message": (client1 - client0) * 1000 / max(1, sent),
        "machine_busy_percent": (busy1 - busy0) / (total1 - total0) * 100,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=int, default=10_000, help="idle sockets (one user each)")
    parser.add_argument("--pairs", type=int, default=1000, help="active chat pairs")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the active phase")
    parser.add_argument("--rate", type=float, default=1.0, help="messages per second per pair")
    parser.add_argument(
        "--per-mitra",
        type=int,
        default=3,
        help="sessions per mitra (default 3, max_customers_per_mitra's default; 20 is its maximum)",
    )
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    secret = secrets.token_urlsafe(48)
    with servers() as (db_url, valkey_url):
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "REDIS_URL": valkey_url,
            "AUTH_JWT_SECRET": secret,
            "APP_ENV": "test",
            "LOG_LEVEL": "WARNING",
            "WEB_CONCURRENCY": "2",
            "DB_POOL_MAX": "16",
        }
        idle_users = tokens(db_url, secret, "customer", args.idle)
        customers = tokens(db_url, secret, "customer", args.pairs)
        mitras = tokens(db_url, secret, "mitra", -(-args.pairs // args.per_mitra))
        sessions = live_sessions(db_url, customers, mitras)
        pairs = [(customers[i][1], mitras[i % len(mitras)][1], sessions[i]) for i in range(args.pairs)]
        with gateway(env) as (url, proc):
            time.sleep(1)
            pids = workers_of(proc.pid)
            idle = asyncio.run(idle_phase(url, idle_users, pids, 10.0))
            active = asyncio.run(active_phase(url, pairs, args.seconds, args.rate, pids))
    print(f"\ngateway: gunicorn, {len(pids)} ASGI worker processes; {os.cpu_count()} CPUs shared with the client\n")
    print(f"idle sockets held:            {idle['sockets']:8.0f}  (opened at {idle['opened_per_second']:.0f}/s)")
    print(f"gateway RSS before / after:   {idle['rss_before_mb']:8.1f} / {idle['rss_after_mb']:.1f} MB")
    print(f"memory per idle socket:       {idle['kb_per_socket']:8.1f} KB")
    print(f"gateway CPU while idle:       {idle['idle_cpu_percent']:8.2f} % of one core")
    print(
        f"\n{args.pairs} active pairs ({args.per_mitra} per mitra) at {args.rate:g} msg/s each for {args.seconds:g} s:"
    )
    print(
        f"  sent / received:            {active['sent']:8.0f} / {active['received']:.0f}  ({active['per_second']:.0f}/s)"
    )
    print(f"  send -> other party, p50:   {active['p50_ms']:8.1f} ms")
    print(f"  p99 / max:                  {active['p99_ms']:8.1f} / {active['max_ms']:.1f} ms")
    print(f"  gateway CPU per message:    {active['gateway_cpu_ms_per_message']:8.2f} ms")
    print(f"  client CPU per message:     {active['client_cpu_ms_per_message']:8.2f} ms  (this benchmark's own)")
    print(
        f"  whole machine busy:         {active['machine_busy_percent']:8.1f} % (client, gateway, PostgreSQL, Valkey)"
    )


if __name__ == "__main__":
    main()
