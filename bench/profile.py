"""Where a hot endpoint's server time goes: py-spy samples the public listener's workers (granian,
production config) while wrk loads one endpoint, and the frames with the most samples are printed.

    make bench-profile                                  # every hot endpoint of bench/run.py
    make bench-profile BENCH_ARGS="--endpoint heartbeat --top 25"

"self" is time in the function itself, "total" includes what it calls; both as a share of the
samples taken while the GIL was held (--gil), which is what bounds a worker's throughput.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as harness


def worker_pids(port: int) -> list[int]:
    """The processes with a socket listening on port: granian's workers."""
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return sorted({int(p) for p in re.findall(r"pid=(\d+)", out)})


def sample(pid: int, seconds: int, out: Path, gil: bool = True) -> None:
    subprocess.run(
        [
            "py-spy",
            "record",
            *(["--gil"] if gil else []),
            "--nonblocking",
            "-r",
            "500",
            "-d",
            str(seconds),
            "-f",
            "raw",
            "-o",
            str(out),
            "-p",
            str(pid),
        ],
        check=True,
        capture_output=True,
    )


def top_frames(files: list[Path], top: int) -> list[str]:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for f in files:
        for line in f.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            n = int(count)
            frames = [
                fr.split(" (")[0] + " (" + fr.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1]
                for fr in stack.split(";")
            ]
            samples += n
            own[frames[-1]] += n
            for fr in set(frames):
                total[fr] += n
    lines = [f"  {'self':>6} {'total':>6}  frame   ({samples} samples)"]
    for frame, n in own.most_common(top):
        lines.append(f"  {100 * n / samples:5.1f}% {100 * total[frame] / samples:5.1f}%  {frame}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", help="a prefix of an endpoint name in bench/run.py (default: all)")
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--all-threads", action="store_true", help="every running thread's samples, not only the GIL holder's"
    )
    parser.add_argument("--db", default=harness.BENCH_DB, help="the database made (and dropped first) for the run")
    args = parser.parse_args()
    wrk = harness.ensure_wrk()
    chosen = [e for e in harness.ENDPOINTS if not args.endpoint or e.name.startswith(args.endpoint)]
    with harness.servers(args.db) as (db_url, valkey_url):
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "REDIS_URL": valkey_url,
            "AUTH_JWT_SECRET": secrets.token_urlsafe(48),
            "APP_ENV": "test",
            "LOG_LEVEL": "INFO",
        }
        with harness.public_server(env, {}, "granian") as url:
            headers = harness.tokens(url, db_url, env["AUTH_JWT_SECRET"])
            pids = worker_pids(int(url.rsplit(":", 1)[1]))
            for e in chosen:
                h = headers[e.token] if e.token else {}
                harness.run_wrk(wrk, url + e.path, 1, args.connections, h, e.method)  # warm-up
                load = threading.Thread(
                    target=harness.run_wrk, args=(wrk, url + e.path, args.seconds + 2, args.connections, h, e.method)
                )
                load.start()
                with tempfile.TemporaryDirectory() as tmp:
                    files = [Path(tmp) / f"{pid}.txt" for pid in pids]
                    samplers = [
                        threading.Thread(target=sample, args=(pid, args.seconds, f, not args.all_threads))
                        for pid, f in zip(pids, files, strict=True)
                    ]
                    for t in samplers:
                        t.start()
                    for t in samplers:
                        t.join()
                    load.join()
                    print(f"\n{e.method} {e.path} ({e.name}), wrk -c{args.connections}, {len(pids)} workers:")
                    print("\n".join(top_frames([f for f in files if f.exists()], args.top)))


if __name__ == "__main__":
    main()
