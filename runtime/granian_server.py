"""Granian (a Rust HTTP server) for the REST listeners, the production default: the same WSGI apps
answer the hot paths several times faster than under gunicorn gthread (bench/run.py, README).

A gap in granian 2.8's stop is closed here, measured by tests/runtime/test_worker_class.py (requests
lost under load on SIGTERM without it): a stopping worker closes every connection it has not read a
request from yet, including ones it accepted a moment ago, and its own SO_REUSEPORT listener's
queued connections are reset when it exits. Here a worker's stop first shuts its door and empties
its queue while it still serves normally: a socket filter drops new SYNs (the client's retransmit
meets a closed port and is refused, so a client or balancer retries elsewhere); once the accept
queue is empty and the accepted requests are read, granian's own stop begins, and requests in
flight finish within GRACEFUL_TIMEOUT. (One listener shared by the workers would keep the queue
across a worker's exit, but spread keep-alive connections so unevenly that /health fell to a third.)
"""

from __future__ import annotations

import atexit
import ctypes
import multiprocessing
import os
import signal
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import granian
from granian.constants import Interfaces
from granian.server import MPServer

from lib import metrics as prom

GRANIAN_TESTED = "2.8.9"  # the granian whose private API this module was written against (docs/performance.md)
try:
    from granian import _signals as granian_signals
    from granian._granian import WorkerSignal
    from granian._signals import set_main_signals
except ImportError as exc:  # an upgrade moved them: fail the boot with this, not with lost requests
    raise RuntimeError(
        f"granian {granian.__version__} no longer has what runtime/granian_server.py patches "
        f"(written against {GRANIAN_TESTED}): {exc}"
    ) from exc

_SO_ATTACH_FILTER = 26  # linux/asm-generic/socket.h; the socket module does not name it
# Classic BPF, run on a packet the listener receives with the TCP header at offset 0: drop a
# packet whose flags are SYN without ACK (a new connection), keep every other (the ACK that
# completes a handshake the listener already answered, which dropping would leave half-open until
# the close resets it).
_DROP_NEW_SYN = (
    (0x30, 0, 0, 13),  # ldb [13]: the flags byte
    (0x54, 0, 0, 0x12),  # and #(SYN|ACK)
    (0x15, 0, 1, 0x02),  # jeq #SYN: drop, else keep
    (0x06, 0, 0, 0),  # ret #0
    (0x06, 0, 0, 0xFFFFFFFF),  # ret #-1
)
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_libc = ctypes.CDLL(None, use_errno=True)
_TCPI_UNACKED = 24  # struct tcp_info: for a listener, tcpi_unacked is the accept queue's length
SETTLE_SECONDS = 0.2  # accepted connections get their request read before the stop begins
DRAIN_LIMIT_SECONDS = 5.0


def accept_queue_length(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return int(struct.unpack_from("I", info, _TCPI_UNACKED)[0])


def attach_filter(sock: socket.socket, program: tuple[tuple[int, int, int, int], ...]) -> None:
    """A classic BPF program, as (code, jt, jf, k) instructions, attached to `sock` (the kernel
    copies it, so the buffer need not outlive the call)."""
    code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *insn) for insn in program))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, struct.pack("HL", len(program), ctypes.addressof(code)))


def refuse_new_connections(sock: socket.socket) -> None:
    """Drop the new SYNs the listener receives; a handshake it has already answered still
    completes into the queue, and queued connections are separate sockets, not touched."""
    attach_filter(sock, _DROP_NEW_SYN)


def listeners(port: int) -> list[socket.socket]:
    """This process's listening TCP sockets on port (granian's Rust side opened them)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if not stat.S_ISSOCK(os.fstat(int(name)).st_mode):
                continue
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:  # the directory's own descriptor, or one closed meanwhile
            continue
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        if listening and sock.family in (socket.AF_INET, socket.AF_INET6) and sock.getsockname()[1] == port:
            found.append(sock)
        else:
            sock.close()
    return found


def drain(port: int) -> None:
    """Refuse new connections and wait until the ones queued are accepted and read."""
    socks = listeners(port)
    for sock in socks:
        refuse_new_connections(sock)
    deadline = time.monotonic() + DRAIN_LIMIT_SECONDS
    while any(accept_queue_length(s) for s in socks) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(SETTLE_SECONDS)
    for sock in socks:
        sock.close()  # our duplicate only; granian closes its own at exit


def _draining_signals(port: int) -> Callable[[], WorkerSignal]:
    """granian's worker signal setup, with the drain before the stop event."""

    def set_sync_signals() -> WorkerSignal:
        stop = WorkerSignal()
        begun = threading.Event()

        def drain_then_stop() -> None:
            try:
                drain(port)
            finally:
                stop.set()

        def on_signal(signum: int, frame: object) -> None:
            if not begun.is_set():
                begun.set()
                threading.Thread(target=drain_then_stop, name="drain", daemon=True).start()

        set_main_signals(on_signal)  # type: ignore[no-untyped-call]
        # A master killed outright (OOM, SIGKILL) would leave this worker serving on its port forever.
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        atexit.register(prom.process_exited, os.getpid())  # this worker's live gauges leave the sums
        return stop

    return set_sync_signals


def granian_options(app: str, bind: str, workers: int, threads: int, graceful_timeout: int) -> dict[str, Any]:
    """The production config; bench/run.py --matrix measures the alternatives."""
    host, _, port = bind.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # "[::]:8080", as gunicorn takes an IPv6 bind
    return {
        "target": app,
        "address": host,
        "port": int(port),
        "interface": Interfaces.WSGI,
        "workers": workers,
        "blocking_threads": threads,
        "backlog": 2048,
        "workers_kill_timeout": graceful_timeout,
        "log_access": False,  # our RequestContext middleware logs each request with its id
        # granian's own lines go through the root handler too, in our JSON/text format
        "log_dictconfig": {"loggers": {"_granian": {"handlers": [], "propagate": True}}},
    }


def serve_granian(options: dict[str, Any]) -> None:
    # Workers are forked so they inherit the patched signal setup (Python 3.14 defaults to
    # forkserver, which granian turns into spawn).
    multiprocessing.set_start_method("fork", force=True)
    if not callable(getattr(granian_signals, "set_sync_signals", None)):
        raise RuntimeError(
            f"granian {granian.__version__} has no _signals.set_sync_signals to patch (written against {GRANIAN_TESTED})"
        )
    granian_signals.set_sync_signals = _draining_signals(options["port"])
    MPServer(**options).serve()
