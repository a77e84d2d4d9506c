"""What a test run holds alone while it runs, claimed with a lock file the kernel releases when the
process ends (a crashed run leaves no stale claim): a Valkey database number on a shared server,
and the data directories of the embedded servers.

Why: pytest-xdist names its workers gw0, gw1, ... in every run, so two runs at once on one machine
(two checkouts, or two people) chose the same database on the same Valkey; one run's FLUSHDB then
emptied the other's presence keys mid-test, and bus channels (namespaced by that number) carried
one run's events into the other's tests. The claims are per machine: runs on other machines
sharing one Valkey server still need databases of their own.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

# Valkey's default `databases 16`; 0 is left to a development service on the same server.
VALKEY_DATABASES = range(1, 16)
WAIT_SECONDS = 900.0


def try_claim(lock_path: Path) -> IO[str] | None:
    """The open, exclusively locked file (keep it open to hold the claim), or None if held."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_path, "a")  # noqa: SIM115 (held open for the whole session on purpose)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def claim_valkey_db(url: str, preferred: int) -> tuple[int, IO[str]]:
    """A database number of the Valkey at `url` that no other run on this machine holds, `preferred`
    first; waits (up to WAIT_SECONDS) while every number is held."""
    parts = urlsplit(url)
    server = f"{parts.hostname}:{parts.port or 6379}" if parts.hostname else parts.path
    tag = hashlib.sha256(server.encode()).hexdigest()[:12]
    numbers = sorted(VALKEY_DATABASES, key=lambda n: (n > preferred, -n))  # preferred, then down, wrapping
    deadline = time.monotonic() + WAIT_SECONDS
    waiting = False
    while True:
        for number in numbers:
            held = try_claim(Path(tempfile.gettempdir()) / f"halobestie-test-valkey-{tag}-db{number}.lock")
            if held is not None:
                return number, held
        if time.monotonic() > deadline:
            raise RuntimeError(f"every Valkey database of {server} is held by other test runs on this machine")
        if not waiting:
            waiting = True
            print(f"[pid {os.getpid()}] waiting for a free Valkey database on {server}", file=sys.stderr)
        time.sleep(0.5)


def claim_dir(base: Path) -> tuple[Path, IO[str]]:
    """`base`, or `base-2`, `base-3`, ... when another run in this checkout holds it (its embedded
    server runs there: starting a second one on the same data would stop or corrupt the first)."""
    for slot in range(1, 100):
        path = base if slot == 1 else base.with_name(f"{base.name}-{slot}")
        held = try_claim(path.with_name(f".{path.name}.claim"))
        if held is not None:
            return path, held
    raise RuntimeError(f"no free data directory beside {base}")
