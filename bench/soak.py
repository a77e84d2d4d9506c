"""Soak under faults (issue 27): the whole product on real processes while they, PostgreSQL and Valkey
are killed, then the invariants checked over the history.

    make soak                                             # 3 minutes, 30 customers, seed 1
    make soak SOAK_ARGS="--minutes 60 --sessions 300 --seed 7"

Starts 2 public, 1 internal, 2 realtime and 2 worker processes on one PostgreSQL and one Valkey
(embedded, or DATABASE_URL / REDIS_URL; a fresh database either way), the fake Xendit and fake FCM,
and simulated customers and mitras (bench/soak/people.py). A seeded fault schedule, printed first,
strikes at least every 30 s. After the load: a drain, then the checks (bench/soak/checker.py) and
the last line, always `soak: <S> sessions, <M> messages, faults <F>; lost <n>, duplicated <n>,
stuck <n>, unaccounted payments <n>`; the exit status is 1 when any count is not 0 (or a 5xx came
outside a fault window, or the harness failed). docs/reliability.md says what each invariant means.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.soak.apps import CLOSED_HERE, Crowd, Record, clock  # noqa: E402
from bench.soak.checker import check, counts, summary  # noqa: E402
from bench.soak.cluster import Cluster, cluster, infra  # noqa: E402
from bench.soak.faults import Injector, schedule  # noqa: E402
from bench.soak.history import collect, errors_outside, lateness, live_sessions, status_counts  # noqa: E402
from bench.soak.people import Customer, Mitra, World  # noqa: E402

# Past its deadline by more than this (the worker's tick, a fault's heal, the docs' 1 s target with
# room for a loaded 2-core machine), a row that did not move is stuck.
STUCK_GRACE = timedelta(seconds=45)


def say(line: str) -> None:
    print(f"[{clock():7.1f} {datetime.now(UTC):%H:%M:%S}] {line}", flush=True)


def short_tier(db_url: str, minutes: int) -> str:
    """A short chat tier, so sessions, extensions and their deadlines turn over within a run."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO pricing_tiers (mode, minutes, price, label, sort_order) "
            "VALUES ('chat', %(minutes)s, 10000, %(label)s, 0) RETURNING id::text",
            {"minutes": minutes, "label": f"Soak {minutes} min"},
        ).fetchone()
        # A search answers within 30 s; a mitra's sessions are 3 at most (the default).
        conn.execute("UPDATE app_config SET value = '30'::jsonb WHERE key = 'pairing_blast_timeout_seconds'")
    assert row is not None
    return str(row[0])


def vanisher(world: World, rng: random.Random) -> str:
    """Called by the fault injector's thread: the choice and the drop happen on the apps' loop."""
    return str(world.crowd.run(_vanish_one(world, rng), timeout=30))


async def _vanish_one(world: World, rng: random.Random) -> str:
    apps = [p.app for p in [*world.mitras, *world.customers]]
    rng.shuffle(apps)
    for app in apps:
        live = app.live_sockets()
        if live:
            sock = rng.choice(live)
            if sock.vanish():
                return f"({sock.connection} vanished)"
    return "(no live socket to drop)"


def money_check(db_url: str, cl: Cluster) -> str:
    """The product's own reconciliation over the same run, for comparison (docs/payments.md)."""
    env = {**cl.procs[0].env, "DATABASE_URL": db_url}
    out = subprocess.run(
        [sys.executable, "-m", "runtime", "money-check", "--days", "1", "--no-poll"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    problems = [line.strip() for line in out.stdout.splitlines() if "PROBLEM" in line]
    return f"exit {out.returncode}, {len(problems)} problem line(s)" + "".join(f"\n    {p}" for p in problems)


def _cpu() -> float:
    """CPU seconds the harness (every simulated app, the load lines, the injector) has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _all(coros: list[Coroutine[Any, Any, None]]) -> None:
    await asyncio.gather(*coros)


async def _spawned(crowd: Crowd, runs: list[Coroutine[Any, Any, None]]) -> list[asyncio.Task[None]]:
    return [crowd.spawn(r) for r in runs]


def run(args: argparse.Namespace) -> int:
    seconds = args.minutes * 60
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tag = f"{args.seed}_{int(time.time())}"
    logs = Path(args.logs or f"/tmp/hb-soak-{tag}")
    with infra(tag) as found:
        for line in found.stops:
            say(line)
        with cluster(found, logs) as cl:
            say(f"cluster up: {', '.join(p.name for p in cl.procs)}; logs in {logs}")
            faults = schedule(
                args.seed,
                seconds,
                [p.name for p in cl.procs],
                pg=found.pg_data is not None,
                valkey=found.valkey is not None,
            )
            print(f"fault schedule (seed {args.seed}, {len(faults)} faults):", flush=True)
            for f in faults:
                print("  " + f.describe(), flush=True)
            record = Record()
            crowd = Crowd(record)
            drain = 240 + 120 * (args.chat_minutes - 1)  # a chat, an extension of it, the goodbyes
            tier = short_tier(found.db_url, args.chat_minutes)
            world = World(cl, crowd, record, args.seed, clock() + seconds, tier, drain)
            mitras = [Mitra(world, i, f"+62815{args.seed % 1000:03d}{i:05d}") for i in range(args.mitras)]
            customers = [Customer(world, i) for i in range(args.sessions)]
            crowd.run(_all([p.setup() for p in [*mitras, *customers]]))
            crowd.run(_all([m.sign_in() for m in mitras]))
            world.mitras, world.customers = mitras, customers
            rng = random.Random(args.seed)
            injector = _running.injector = Injector(faults, cl, found, lambda: vanisher(world, rng), say)
            wall0, t0 = datetime.now(UTC), clock()
            cpu0 = _cpu()
            crowd.run(_spawned(crowd, [m.run() for m in mitras]))
            buying = crowd.run(_spawned(crowd, [c.run() for c in customers]))
            injector.start()
            live: list[int] = []  # chats open at each load line, once every customer has had time to start
            while clock() < world.stop_new_at:
                time.sleep(15)
                now_live = live_sessions(found.db_url)
                if now_live is not None and clock() - t0 > 60:
                    live.append(now_live)
                say(
                    f"load: {len(world.sessions)} sessions, {now_live} live, {len(record.sent)} messages, "
                    f"harness CPU {100 * (_cpu() - cpu0) / (clock() - t0):.0f}% of a core, "
                    f"its loop's lag max {crowd.worst_lag():.2f} s, {dict(record.counters)}"
                )
            say("no new purchases; draining (chats end, goodbyes, deadlines)")
            if buying:
                crowd.run(asyncio.wait(buying, timeout=max(1.0, world.stop_new_at + drain - clock())))
            injector.join(timeout=180)
            time.sleep(20)  # the last deadlines and the worker's sweeps
            invoices = cl.xendit.invoices
            history = collect(found.db_url, found.valkey_url, record, list(invoices.values()))
            fired = [f for f in faults if f.started]
            violations = check(history, STUCK_GRACE)
            outside = errors_outside(record, fired)
            print("\nfaults (heal time = until every listener is ready again):")
            for f in fired:
                heal = f"{f.healed - f.started:5.1f} s" if f.healed else "NOT HEALED"
                print(f"  {f.describe()}  heal {heal} {f.note}")
            print("\nfigures:")
            signed_in = record.counters.get("customers signed in", 0)
            print(f"  customers signed in: {signed_in} of {len(customers)}")
            if live:
                print(
                    f"  chats open at once (every 15 s after the first minute): mean {sum(live) / len(live):.0f}, max {max(live)}"
                )
            print(f"  sessions by status: {dict(status_counts(found.db_url))}")
            print(f"  apps: {dict(sorted(record.counters.items()))}")
            print(f"  fake Xendit: {len(invoices)} invoices, fake FCM: {cl.fcm.pushes()} pushes")
            answers = Counter(r.status for r in record.replies)
            print(f"  HTTP answers by status (0: no replica answered): {dict(sorted(answers.items()))}")
            print("\n".join(lateness(found.db_url, fired, wall0, t0)))
            print(f"  money-check: {money_check(found.db_url, cl)}")
            closed_here = sum(r.error.startswith(CLOSED_HERE) for r in record.replies)
            print(f"  tries whose connection the app's own HTTP client closed (retried; no server met): {closed_here}")
            print(f"  5xx or no answer outside fault windows: {len(outside)}")
            for r in outside[:20]:
                print(f"    {r.sent_at:8.2f}-{r.at:.2f} {r.who} {r.method} {r.path} -> {r.status or r.error}")
            for v in violations:
                print(v.render())
                print(f"    see the app log lines in {logs / 'apps.log'}")
            (logs / "apps.log").write_text("\n".join(record.lines) + "\n")
            (logs / "replies.log").write_text(
                "".join(
                    f"{r.sent_at:8.2f}-{r.at:8.2f} {r.who} {r.method} {r.path} {r.status} {r.error}\n"
                    for r in record.replies
                )
            )
            found_counts = counts(violations)
            unhealed = [f for f in fired if f.healed is None]
            messages = sum(1 for s in record.sent if s.acked)
            crowd.close()
            if signed_in < len(customers):  # the run did not carry the load it claims
                print(f"harness: {len(customers) - signed_in} customers could not sign in (see {logs / 'apps.log'})")
            harness_errors = record.counters.get("harness errors", 0)
            if harness_errors:  # an app that stopped listening: the checks cannot be trusted
                print(f"harness: {harness_errors} task(s) failed (HARNESS ERROR in {logs / 'apps.log'})")
            print(summary(len(world.sessions), messages, len(fired), found_counts), flush=True)
    bad = any(found_counts.values()) or bool(outside) or bool(unhealed) or signed_in < len(customers) or harness_errors
    return 1 if bad else 0


class _Running:
    injector: Injector | None = None


_running = _Running()


def _stopped(signum: int, _frame: object) -> None:
    """The first SIGTERM or SIGINT: no fault is injected any more (a kill would restart a process
    the teardown stopped), then the run unwinds; a second signal cannot interrupt the teardown."""
    for other in (signal.SIGTERM, signal.SIGINT):
        signal.signal(other, signal.SIG_IGN)
    if _running.injector is not None:
        _running.injector.stopped.set()
    raise SystemExit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0, help="minutes of load (a drain follows)")
    parser.add_argument("--sessions", type=int, default=30, help="simulated customers, each buying chats in turn")
    parser.add_argument("--mitras", type=int, default=0, help="simulated mitras (default: a third of --sessions + 2)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--chat-minutes", type=int, default=1, help="length of the chat tier bought (extensions add as much)"
    )
    parser.add_argument("--logs", default="", help="directory for the processes' and apps' logs")
    args = parser.parse_args()
    args.mitras = args.mitras or args.sessions // 3 + 2
    # SIGTERM (and SIGINT, which a shell ignores for a job it starts in the background) unwinds the
    # run like an error, so the cluster's processes and servers are stopped, not left behind.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stopped)
    sys.exit(run(args))


if __name__ == "__main__":
    main()
