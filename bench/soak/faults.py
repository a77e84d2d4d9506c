"""The fault schedule: seeded, printed before the run, at least one fault every 30 s; each fault's
window lasts from its start until the cluster is ready again (its heal time)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.soak.apps import clock
from bench.soak.cluster import Cluster, Infra

# Fault kinds, each struck once per round in a seeded order (a kill twice: it has the most targets).
KINDS = (
    "kill",  # SIGKILL of a random public, internal, realtime or worker process, restarted
    "kill",
    "rollout",  # SIGTERM of each process of one kind in turn, each restarted before the next
    "pg-restart",
    "pg-pause",
    "valkey-restart",
    "client-vanish",
)
MAX_GAP = 28.0


@dataclass
class Fault:
    at: float  # seconds after the load starts
    kind: str
    target: str
    seconds: float = 0.0  # how long a pause or an outage lasts
    started: float = 0.0
    healed: float | None = None
    note: str = ""

    def describe(self) -> str:
        extra = f" for {self.seconds:.1f} s" if self.seconds else ""
        return f"{self.at:7.1f} s  {self.kind:15} {self.target}{extra}"


def schedule(seed: int, seconds: float, procs: list[str], pg: bool, valkey: bool) -> list[Fault]:
    rng = random.Random(seed)
    kinds = [k for k in KINDS if (pg or not k.startswith("pg")) and (valkey or k != "valkey-restart")]
    out, t = [], rng.uniform(10, 20)
    round_: list[str] = []
    while t < seconds - 15:
        if not round_:
            round_ = rng.sample(kinds, len(kinds))
        kind = round_.pop()
        target, length = "", 0.0
        if kind == "kill":
            target = rng.choice(procs)
        elif kind == "rollout":
            target = rng.choice(["public", "realtime", "worker"])
        elif kind == "pg-pause":
            length = rng.uniform(2, 6)
        elif kind == "valkey-restart":
            length = rng.uniform(0.5, 3)
        elif kind == "client-vanish":
            target = "a random live socket"
        out.append(Fault(round(t, 1), kind, target, round(length, 1)))
        t += rng.uniform(12, MAX_GAP)
    return out


class Injector(threading.Thread):
    """Runs the schedule against the cluster; after each fault, waits until every listener is ready."""

    def __init__(
        self, faults: list[Fault], cluster: Cluster, found: Infra, vanish: Callable[[], str], say: Callable[[str], None]
    ) -> None:
        super().__init__(daemon=True, name="faults")
        self.faults, self.cluster, self.found, self.vanish, self.say = faults, cluster, found, vanish, say
        self.t0 = clock()
        self.done = threading.Event()
        self.stopped = threading.Event()  # the run is being torn down: inject (and restart) nothing more

    def run(self) -> None:
        for fault in self.faults:
            if self.stopped.wait(max(0.0, self.t0 + fault.at - clock())):
                return
            fault.started = clock()
            try:
                self._inject(fault)
            except Exception as exc:  # reported with the fault; the schedule goes on
                fault.note = f"injection failed: {type(exc).__name__}: {exc}"
            fault.healed = self._heal(fault.started)
            took = f"healed in {fault.healed - fault.started:.1f} s" if fault.healed else "NOT healed in 120 s"
            self.say(f"fault {fault.describe().strip()}: {took} {fault.note}".rstrip())
        self.done.set()

    def _inject(self, fault: Fault) -> None:
        c, f = self.cluster, self.found
        if fault.kind == "kill":
            proc = next(p for p in c.procs if p.name == fault.target)
            proc.kill()
            proc.start()
            proc.wait_healthy()
        elif fault.kind == "rollout":
            for proc in c.of(fault.target):
                proc.terminate()
                proc.start()
                proc.wait_healthy()
        elif fault.kind == "pg-restart":
            f.pg_restart()
        elif fault.kind == "pg-pause":
            f.pg_pause(fault.seconds)
        elif fault.kind == "valkey-restart":
            f.valkey_restart(fault.seconds)
        elif fault.kind == "client-vanish":
            fault.note = self.vanish()

    def _heal(self, since: float) -> float | None:
        while clock() - since < 120:
            if self.cluster.ready():
                return clock()
            time.sleep(0.25)
        return None
