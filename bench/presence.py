"""A mass close on one gateway process (a network blip, a flood closed at once): forgetting N
sockets' presence in Valkey as group commits (runtime/gateway/presence.py, through Batches) against
one pool job per socket, as the gateway did before. Prints wall time and this process's CPU.

    .venv/bin/python bench/presence.py [--sockets 10000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import servers  # noqa: E402
from lib import sockets  # noqa: E402
from lib.services import Services  # noqa: E402


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _forget(services: Services, entries: list[tuple[str, str]], batched: bool) -> tuple[float, float]:
    from runtime.gateway import Gateway

    gateway = Gateway(services, {})
    gateway.loop = asyncio.get_running_loop()
    cpu, wall = _cpu(), time.perf_counter()
    try:
        if batched:
            await asyncio.gather(*(gateway.presence.forget(entry) for entry in entries))
        else:
            await asyncio.gather(*(gateway.presence.record(sockets.forget, *entry) for entry in entries))
        return time.perf_counter() - wall, _cpu() - cpu
    finally:
        gateway.pool.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of both ways, alternating")
    args = parser.parse_args()
    with servers() as (db_url, valkey_url):
        os.environ.update(
            DATABASE_URL=db_url, REDIS_URL=valkey_url, APP_ENV="test", AUTH_JWT_SECRET=secrets.token_urlsafe(48)
        )
        from lib.config.env import load_settings
        from runtime.container import build_services

        services = build_services(load_settings())
        entries = [
            (sockets.key("customer", f"00000000-0000-4000-8000-{i:012d}"), "bench:1|*") for i in range(args.sockets)
        ]
        print(f"forgetting {args.sockets:,} sockets' presence at once, one gateway process:")
        try:
            for _ in range(args.rounds):
                for batched in (False, True):
                    sockets.announce(services.valkey, entries)
                    wall, cpu = asyncio.run(_forget(services, entries, batched))
                    left = sum(services.valkey.exists(k) for k, _ in entries[:100])
                    how = "group commits      " if batched else "a pool job each    "
                    print(f"  {how} wall {wall:6.2f} s   CPU {cpu:6.2f} s   ({left} of the first 100 left)")
        finally:
            services.close()


if __name__ == "__main__":
    main()
