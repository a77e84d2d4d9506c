"""Hostile sockets for `make bench-realtime`: authenticated users who flood the gateway with every
frame it must refuse, as fast as they can, from a process of their own (so that the honest pairs'
client, which measures the latency, keeps its own event loop).

Each hostile socket is its own user (a customer); half of them join a live session of their own
(with a mitra no honest pair has), the others join none. Their frames cycle through junk JSON,
`message.send` with a NUL or a lone surrogate, typing storms, frames just under the 16 KiB limit,
unknown types, binary frames and, in their own session, valid messages past the per-sender limit.
A socket the gateway closes is opened again at once, as an attacker would. Every reply is counted by
its type (and an error by its code), every close by its code.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import queue
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets

NUL_CONTENT = '{"type": "message.send", "client_message_id": "nul", "content": "a\\u0000b"}'
SURROGATE_CONTENT = '{"type": "message.send", "client_message_id": "sur", "content": "\\ud800"}'
SURROGATE_ID = '{"type": "message.send", "client_message_id": "\\udfff", "content": "halo"}'
TYPING = '{"type": "typing"}'
# Frames up to 16 KiB are read; these stay just under (the gateway closes a larger one with 1009).
UNDER_LIMIT = 16 * 1024 - 200
LONG_CONTENT = json.dumps({"type": "message.send", "client_message_id": "long", "content": "x" * UNDER_LIMIT})
PADDED_TYPING = json.dumps({"type": "typing", "pad": "y" * UNDER_LIMIT})
DEEP = '{"type": "typing", "x": ' + "[" * 5000 + "]" * 5000 + "}"  # 10 KB, 5,000 levels

# One cycle of a hostile socket's frames: a third of them typing.
CYCLE: list[str | bytes] = [
    "{not json",
    TYPING,
    NUL_CONTENT,
    TYPING,
    SURROGATE_CONTENT,
    TYPING,
    '{"type": "nope"}',
    TYPING,
    LONG_CONTENT,
    TYPING,
    SURROGATE_ID,
    TYPING,
    DEEP,
    TYPING,
    '{"type": 123}',
    TYPING,
    PADDED_TYPING,
    TYPING,
    '{"type": "auth", "token": "x"}',
    TYPING,
    '"just a string"',
    TYPING,
    b"\x00\x01binary",
    TYPING,
    '{"type": "message.read"}',
    "VALID",  # a valid message.send (a fresh client_message_id each time)
]


@dataclass
class Tally:
    """What the hostile sockets sent and what the gateway answered."""

    frames: int = 0
    bytes: int = 0
    replies: Counter[str] = field(default_factory=Counter)  # "error:<code>" or the reply's type
    closes: Counter[int] = field(default_factory=Counter)
    opened: int = 0
    failed_opens: int = 0
    cpu_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def rate_limited(self) -> int:
        return self.replies["error:RATE_LIMITED"]

    @property
    def errors(self) -> int:
        return sum(n for kind, n in self.replies.items() if kind.startswith("error:"))


async def _open(url: str, token: str, session_id: str | None, tally: Tally) -> Any:
    """An authenticated socket, or None (counted) when the gateway would not have it."""
    try:
        # Uncompressed: more bytes for the gateway to read, and no CPU of this shared machine spent
        # deflating a flood (a compressing attacker used 61% of a core, which is ours here and
        # its own in production).
        ws = await websockets.connect(url, open_timeout=30, max_size=2**20, ping_interval=None, compression=None)
    except (OSError, websockets.WebSocketException, TimeoutError):
        tally.failed_opens += 1
        return None
    try:
        await ws.send(
            json.dumps({"type": "auth", "token": token, **({"session_id": session_id} if session_id else {})})
        )
        if json.loads(await ws.recv()).get("type") == "auth.ok":
            tally.opened += 1
            return ws
    except websockets.ConnectionClosed as closed:
        tally.closes[closed.rcvd.code if closed.rcvd else 1006] += 1
    tally.failed_opens += 1
    await ws.close()
    return None


async def _hostile(url: str, login: tuple[str, str | None], ws: Any, index: int, stop: float, tally: Tally) -> None:
    """Flood on `ws` until `stop`; a socket the gateway closes is opened again."""
    sent = 0
    while time.perf_counter() < stop:
        if ws is None:
            ws = await _open(url, *login, tally)
            if ws is None:
                await asyncio.sleep(0.1)
                continue
        reader = asyncio.create_task(_count_replies(ws, tally))
        try:
            while time.perf_counter() < stop:
                frame = CYCLE[sent % len(CYCLE)]
                if frame == "VALID":
                    frame = json.dumps(
                        {"type": "message.send", "client_message_id": f"h{index}-{sent}", "content": "spam"}
                    )
                try:  # a send waits while the gateway does not read (TCP pushes back): not past the stop
                    await asyncio.wait_for(ws.send(frame), max(0.01, stop - time.perf_counter()))
                except TimeoutError:
                    break
                sent += 1
                tally.frames += 1
                tally.bytes += len(frame)
                if sent % 16 == 0:
                    await asyncio.sleep(0)  # let the readers and the other sockets run
        except websockets.ConnectionClosed as closed:
            tally.closes[closed.rcvd.code if closed.rcvd else 1006] += 1
            await asyncio.sleep(0.05)
        finally:
            reader.cancel()
            # Gone without a closing handshake, as an attacker goes: the close frame would wait
            # behind megabytes of unread flood.
            ws.transport.abort()
            ws = None


async def _count_replies(ws: Any, tally: Tally) -> None:
    try:
        async for raw in ws:
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "error":
                tally.replies[f"error:{(frame.get('data') or {}).get('code')}"] += 1
            else:
                tally.replies[str(kind)] += 1
    except websockets.ConnectionClosed:
        pass


async def _flood(url: str, logins: list[tuple[str, str | None]], ready: Any, go: Any, seconds: float) -> Tally:
    tally = Tally()
    opened = await asyncio.gather(*(_open(url, token, session, tally) for token, session in logins))
    ready.set()
    await asyncio.to_thread(go.wait)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    stop = started + seconds
    await asyncio.gather(*(_hostile(url, logins[i], ws, i, stop, tally) for i, ws in enumerate(opened)))
    tally.seconds = min(time.perf_counter(), stop) - started  # not the closing handshakes after
    after = resource.getrusage(resource.RUSAGE_SELF)
    tally.cpu_seconds = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
    return tally


def _run(
    url: str, logins: list[tuple[str, str | None]], ready: Any, go: Any, seconds: float, out: Any, nice: int
) -> None:
    os.nice(nice)
    out.put(asyncio.run(_flood(url, logins, ready, go, seconds)))


class CpuCap:
    """A CPU cgroup that holds the processes put in it to `percent` of one core: cgroup v2's cpu.max
    where the unified hierarchy has the cpu controller, else v1's CFS quota. Needs root (or a
    delegated cgroup); RuntimeError says why not otherwise."""

    PERIOD_US = 100_000

    def __init__(self, percent: float) -> None:
        if not 0 < percent <= 100:
            raise ValueError("--attacker-cpu is a share of one core: more than 0, at most 100")
        quota = max(1000, int(self.PERIOD_US * percent / 100))
        name = f"hb-attacker-{os.getpid()}"
        v2, v1 = Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/cpu")
        # v2: the controllers a child group may use are the parent's subtree_control.
        children_get = v2 / "cgroup.subtree_control"
        if children_get.exists() and "cpu" in children_get.read_text(errors="replace").split():
            self.path, limits = v2 / name, {"cpu.max": f"{quota} {self.PERIOD_US}"}
        else:
            self.path = v1 / name
            limits = {"cpu.cfs_period_us": str(self.PERIOD_US), "cpu.cfs_quota_us": str(quota)}
        try:
            self.path.mkdir()
        except OSError as exc:
            raise RuntimeError(f"--attacker-cpu needs a writable CPU cgroup (root): {exc}") from exc
        try:
            for file, value in limits.items():
                (self.path / file).write_text(value)
        except OSError as exc:
            self.remove()
            raise RuntimeError(f"--attacker-cpu could not set the cgroup's limit: {exc}") from exc

    def hold(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def remove(self) -> None:
        try:
            self.path.rmdir()
        except OSError:
            pass  # a process still in it; the kernel keeps an empty group harmlessly until reboot


class Attack:
    """The hostile sockets in a process of their own, opened at once; `start()` lets them loose for
    `seconds`, `result()` waits for them to finish and returns what they sent and were answered.
    `nice` lowers its priority: on one machine, the attacker's own CPU then comes second to the
    gateway's (it still fills the sockets: a blocked send costs none). `cpu_percent` caps it in a
    cgroup at that share of one core, as if it ran on a machine of its own: what its sockets carry
    to the gateway is what the gateway reads, which is bounded by the gateway's per-socket rate, not
    by the attacker's speed (print_attack shows the gateway's own counts to compare)."""

    def __init__(
        self,
        url: str,
        logins: list[tuple[str, str | None]],
        seconds: float,
        nice: int = 0,
        cpu_percent: float | None = None,
    ) -> None:
        self.cap = CpuCap(cpu_percent) if cpu_percent else None
        context = multiprocessing.get_context("spawn")
        self.ready, self.go = context.Event(), context.Event()
        self.out: Any = context.Queue()
        args = (url, logins, self.ready, self.go, seconds, self.out, nice)
        self.process = context.Process(target=_run, args=args, daemon=True)
        self.process.start()
        if self.cap is not None and self.process.pid is not None:
            try:
                self.cap.hold(self.process.pid)
            except OSError:
                self.process.kill()
                self.cap.remove()
                raise

    def wait_ready(self, timeout: float = 120) -> None:
        """Until every hostile socket is open (or refused)."""
        if not self.ready.wait(timeout):
            self.process.kill()
            raise RuntimeError("the hostile sockets did not open")

    def start(self) -> None:
        self.go.set()

    def result(self, timeout: float) -> Tally:
        try:
            tally: Tally = self.out.get(timeout=timeout)
        except queue.Empty:
            self.process.kill()
            raise RuntimeError("the hostile sockets did not report") from None
        finally:
            self.process.join(5)
            if self.cap is not None:
                self.cap.remove()
        return tally
