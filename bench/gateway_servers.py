"""The realtime app (runtime.realtime:app) under each candidate server with public options only, held
to the checks of tests/runtime/test_gateway_real_clients.py, test_gateway_rfc6455.py and
test_gateway_rfc7692.py, then measured: memory per idle socket, sockets opened per second, CPU per
message (issue 24, item 2; docs/servers.md).

    .venv/bin/python bench/gateway_servers.py                          # every installed server
    .venv/bin/python bench/gateway_servers.py --only uvicorn-wsproto --idle 500 --pairs 100
    .venv/bin/python bench/gateway_servers.py --no-checks --idle 2000 --pairs 300
    .venv/bin/python bench/gateway_servers.py --gunicorn-site DIR      # also DIR's gunicorn, stock

A server that is not installed is skipped with a line saying so (uvicorn, wsproto are not project
dependencies: `.venv/bin/pip install uvicorn wsproto` for the evaluation). `--gunicorn-site` names a
directory holding another gunicorn (`pip install --no-deps --target DIR gunicorn==27.0.1`), put first
on that server's PYTHONPATH only, so the project's own gunicorn stays as locked.

The checks reuse the tests' own clients and expectations (Node's `ws`, headless Chromium, the raw
socket), pointed at a server started here instead of `python -m runtime serve realtime`. PostgreSQL
and Valkey come from DATABASE_URL / REDIS_URL (a database of this script's own is made there), or
embedded ones are started. Nothing is asserted: a table of PASS / FAIL per check and server is
printed, then each failure's detail, then the figures (compare figures of one run only)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gunicorn.workers.gasgi import ASGIWorker  # noqa: E402

from bench.realtime import active_phase, idle_phase, make_pairs, tokens  # noqa: E402
from bench.run import free_port, servers  # noqa: E402
from runtime import migrate  # noqa: E402
from tests.helpers import wait_http  # noqa: E402
from tests.runtime import test_gateway_real_clients as real  # noqa: E402
from tests.runtime import test_gateway_rfc6455 as rfc6455  # noqa: E402
from tests.runtime import test_gateway_rfc7692 as rfc7692  # noqa: E402

OWN_DB = "halobestie_servers"  # not bench/run.py's database: other benchmarks may be using theirs
MAX_MESSAGE = 16 * 1024  # lib.frames.MAX_FRAME_BYTES, the gateway's bound, given to each server that takes one
APP = "runtime.realtime:app"
PY = sys.executable


@dataclass
class Server:
    name: str
    needs: str  # the module that must be importable (in the server's environment)
    argv: Callable[[int, int], list[str]]  # (port, workers) -> command
    options: str  # the public options given, as printed in docs/servers.md
    env: dict[str, str] = field(default_factory=dict)


def _uvicorn(impl: str, deflate: bool, app: str = APP, suffix: str = "") -> Server:
    flags = [
        f"--ws={impl}",
        f"--ws-max-size={MAX_MESSAGE}",
        "--ws-max-queue=16",  # BoundedWebSocketProtocol.queue_size
        "--ws-ping-interval=20",
        f"--ws-per-message-deflate={str(deflate).lower()}",
    ]
    return Server(
        f"uvicorn-{impl}" + ("" if deflate else "-nodeflate") + suffix,
        "wsproto" if impl == "wsproto" else "uvicorn",
        lambda port, workers: [
            *(PY, "-m", "uvicorn", app, "--host=127.0.0.1", f"--port={port}", f"--workers={workers}"),
            *("--lifespan=on", "--loop=asyncio", "--http=h11", "--no-access-log", "--timeout-graceful-shutdown=30"),
            "--log-level=warning",
            *flags,
        ],
        " ".join(flags) + ("" if app == APP else f" (app {app})"),
    )


SIGNAL_APP = "bench.gateway_servers:going_away"


async def going_away(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """runtime.realtime:app with a SIGTERM handler of its own, set at lifespan startup through
    Python's `signal` module and chained to whatever handler the server had put there: the gateway
    closes every socket with 1001, then the server stops as it would have. Public APIs only
    (`signal.getsignal`/`signal.signal`, `loop.call_soon_threadsafe`); what it leans on is that the
    server handles SIGTERM in the main thread, with a Python handler (uvicorn) or through asyncio's
    `add_signal_handler` (gunicorn), whose wakeup fd still delivers the signal to the loop once the
    Python-level handler is ours."""
    from runtime.realtime import app  # imported in the server's worker, never by the harness

    async def receive_and_chain() -> Any:
        message = await receive()
        if message["type"] == "lifespan.startup":
            loop, gateway = asyncio.get_running_loop(), app.gateway
            previous = signal.getsignal(signal.SIGTERM)

            def on_sigterm(signum: int, frame: Any) -> None:
                loop.call_soon_threadsafe(lambda: loop.create_task(gateway.shutdown()))
                if callable(previous):
                    previous(signum, frame)

            signal.signal(signal.SIGTERM, on_sigterm)
        return message

    await app(scope, receive_and_chain if scope["type"] == "lifespan" else receive, send)


class GoingAwayWorker(ASGIWorker):  # type: ignore[misc]
    """gunicorn's ASGI worker with its own WebSocket class, and the one override RealtimeWorker would
    keep without its protocol class: at SIGTERM the gateway closes every socket with 1001 at once
    (stock gunicorn waits graceful_timeout for sockets that never end by themselves, then drops them).
    `handle_exit_signal`, `asgi` and `loop` are not documented API: measured to see what is left."""

    def handle_exit_signal(self) -> None:
        super().handle_exit_signal()
        gateway = getattr(self.asgi, "gateway", None)
        if gateway is not None:
            self.loop.create_task(gateway.shutdown())


def _gunicorn_stock(name: str, extra: list[str], env: dict[str, str], worker: str = "asgi", app: str = APP) -> Server:
    return Server(
        name,
        "gunicorn",
        lambda port, workers: [
            *(
                PY,
                "-m",
                "gunicorn",
                app,
                f"--worker-class={worker}",
                f"--bind=127.0.0.1:{port}",
                f"--workers={workers}",
            ),
            *("--asgi-lifespan=on", "--asgi-loop=asyncio", "--no-control-socket", "--worker-tmp-dir=/dev/shm"),
            *("--graceful-timeout=30", "--log-level=warning"),
            *extra,
        ],
        " ".join([f"--worker-class={worker}", *extra, *([] if app == APP else [f"(app {app})"])]),
        env,
    )


def candidates(gunicorn_site: Path | None) -> list[Server]:
    found = [
        Server(
            "production",  # gunicorn 26 with our protocol class patched in (runtime/worker_class.py)
            "gunicorn",
            lambda port, workers: [PY, "-m", "runtime", "serve", "realtime", "--bind", f"127.0.0.1:{port}"],
            "python -m runtime serve realtime (RealtimeWorker, BoundedWebSocketProtocol)",
        ),
        _gunicorn_stock("gunicorn-stock", [], {}),
    ]
    if gunicorn_site is not None:
        site = {"PYTHONPATH": str(gunicorn_site)}
        limit = [f"--websocket-max-message-size={MAX_MESSAGE}"]
        found.append(_gunicorn_stock("gunicorn-site-stock", limit, site))
        found.append(_gunicorn_stock("gunicorn-site-1001", limit, site, "bench.gateway_servers.GoingAwayWorker"))
        found.append(_gunicorn_stock("gunicorn-site-signal", limit, site, app=SIGNAL_APP))
    for impl in ("websockets", "websockets-sansio", "wsproto"):
        found.append(_uvicorn(impl, deflate=True))
    found.append(_uvicorn("websockets-sansio", deflate=False))
    found.append(_uvicorn("websockets-sansio", deflate=False, app=SIGNAL_APP, suffix="-signal"))
    found.append(
        Server(
            "granian",
            "granian",
            lambda port, workers: [
                *(PY, "-m", "granian", "--interface=asgi", "--host=127.0.0.1", f"--port={port}"),
                *(f"--workers={workers}", "--loop=asyncio", "--ws", "--no-access-log", "--log-level=warning", APP),
            ],
            "--interface=asgi --ws (no WebSocket size, queue or deflate option exists)",
        )
    )
    return found


def installed(server: Server) -> str | None:
    """The version of the server's package, or None when it cannot be imported where it will run."""
    code = (
        f"import importlib.metadata as m, {server.needs}; "
        f"print(getattr({server.needs}, '__version__', None) or m.version('{server.needs}'))"
    )
    run = subprocess.run([PY, "-c", code], env={**os.environ, **server.env}, capture_output=True, text=True)
    return run.stdout.strip() if run.returncode == 0 else None


# --- running a server ---------------------------------------------------------------------------


def server_pids(master: int) -> list[int]:
    """The processes serving sockets: the master's children (not multiprocessing's resource tracker),
    or the master itself when it serves alone (uvicorn with one worker)."""
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    pids = []
    for pid in (int(p) for p in out.split()):
        with suppress(OSError):
            if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
    return pids or [master]


@contextmanager
def serving(server: Server, env: dict[str, str], workers: int) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The app under `server` on a free port, answering /health; yields (ws url, process), stops it with
    SIGTERM (then SIGKILL) unless the caller already did. Its output goes to a file: a pipe nobody
    reads would stall a server that logs each connection once 64 KiB had piled up."""
    port = free_port()
    proc_env = {**env, **server.env, "WEB_CONCURRENCY": str(workers)}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            server.argv(port, workers), cwd=ROOT, env=proc_env, stdout=log, stderr=log, start_new_session=True
        )
        try:
            try:
                wait_http(f"http://127.0.0.1:{port}/health", timeout=60)
            except TimeoutError:
                stop(proc)
                log.seek(0)
                said = log.read().decode(errors="replace")[-800:]
                raise RuntimeError(f"{server.name} did not start: {said}") from None
            time.sleep(0.5 * workers)  # every worker listening
            yield f"ws://127.0.0.1:{port}/api/shared/ws", proc
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout: float = 40) -> None:
    """SIGTERM to the server's master; after `timeout`, SIGKILL to its whole process group (a master
    killed alone leaves its workers running: granian's did, holding a socket open)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # workers still there once the master is gone
    proc.wait()


# --- the checks ---------------------------------------------------------------------------------

Outcome = tuple[bool | None, str]  # (passed, or None when skipped; detail)


def node_ready() -> Path | None:
    """tests/runtime/test_gateway_real_clients.py's Node client (ws@8 under .dev), or None."""
    npm = shutil.which("npm")
    if not shutil.which("node") or not npm:
        return None
    if not (real.NODE_DIR / "node_modules" / "ws").is_dir():
        real.NODE_DIR.mkdir(parents=True, exist_ok=True)
        run = subprocess.run(
            [npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(real.NODE_DIR), "ws@8"],
            capture_output=True,
            text=True,
            timeout=180,
        )
        if run.returncode != 0:
            return None
    (real.NODE_DIR / "client.js").write_text(real.NODE_CLIENT)
    return real.NODE_DIR


def node_checks(node: Path, url: str, token: str) -> dict[str, Outcome]:
    """Each scenario of the Node test, against its expected outcome (the negotiated extension is
    reported, not held to our class's answer)."""
    results: dict[str, Outcome] = {}
    extensions = set()
    for scenario, expected in real.NODE_EXPECTED.items():
        seen = real._node(node, url, token, scenario)
        extensions.add(seen.get("extensions"))
        observed = real._outcome(seen, expected)
        wanted = {**expected, "errors": 0, "timeout": False}
        if scenario == "bare" and observed.get("code") == 1000:
            wanted["code"] = 1000  # issue 24 allows answering a code-less close with 1000
        results[f"node ws: {scenario}"] = (observed == wanted, _diff(observed, wanted))
    plain = real._node(node, url, token, "oversize", deflate="off")
    results["node ws: oversize, no deflate"] = (
        (plain["code"], plain["errors"]) == (1009, []),
        f"code {plain.get('code')}, errors {plain.get('errors')}",
    )
    results["node ws: deflate answer"] = (None, " | ".join(sorted(str(e) for e in extensions)))
    return results


def _diff(observed: dict[str, Any], wanted: dict[str, Any]) -> str:
    return ", ".join(f"{k}={observed.get(k)!r} (want {v!r})" for k, v in wanted.items() if observed.get(k) != v)


def chromium_checks(browser: real.Chromium, url: str, token: str) -> dict[str, Outcome]:
    results: dict[str, Outcome] = {}
    extensions = set()
    for scenario, step in real.BROWSER_STEPS.items():
        try:
            real._open_in_browser(browser, url, token)
            browser.evaluate(step)
            seen = browser.evaluate(real.BROWSER_CLOSED)
        except (AssertionError, TimeoutError) as exc:
            results[f"chromium: {scenario}"] = (False, f"did not open/authenticate: {str(exc)[:120]}")
            continue
        extensions.add(seen.get("extensions") or None)
        expected = dict(real.BROWSER_EXPECTED[scenario])
        observed = {k: seen.get(k) for k in expected}
        if scenario == "bare" and observed.get("code") == 1000:
            expected["code"] = 1000  # issue 24 allows answering a code-less close with 1000
        results[f"chromium: {scenario}"] = (observed == expected, _diff(observed, expected))
    results["chromium: deflate answer"] = (None, " | ".join(sorted(str(e) for e in extensions)))
    return results


@contextmanager
def _attempt(results: dict[str, Outcome], name: str) -> Iterator[None]:
    """Runs a test body: PASS, or FAIL with the assertion (or error) that stopped it."""
    try:
        yield
    except AssertionError as exc:
        results[name] = (False, (str(exc).splitlines() or ["assertion failed"])[0][:200])
    except Exception as exc:  # a hang cut by the client's timeout, a reset: the check failed
        results[name] = (False, f"{type(exc).__name__}: {str(exc)[:160]}")
    else:
        results[name] = (True, "")


def closing_bare(ws: Any) -> None:
    """A close without a status code is answered without one, or with 1000 (issue 24), never 1005."""
    with ws() as raw:
        raw.close()
        answer = raw.closed_with(reply=False)
        assert answer is not None, "the connection ended without a close frame"
        assert answer == b"" or rfc6455.code(answer) == 1000, f"answered {answer!r}"


def closing_echo(ws: Any) -> None:
    """A code is echoed; the server ends the TCP connection first (RFC 6455 7.1.1)."""
    for sent in (1000, 1001, 3000, 4999):
        with ws() as raw:
            raw.close(struct.pack("!H", sent) + "selesai ✓".encode())
            assert rfc6455.code(raw.closed_with(reply=False)) == sent, sent


def closing_bad(ws: Any) -> None:
    """A one-byte close payload or a code that may not be sent fails with 1002, a reason that is not
    UTF-8 with 1007."""
    for bad in (b"\x03", *(struct.pack("!H", c) for c in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000))):
        with ws() as raw:
            raw.close(bad)
            got = rfc6455.code(raw.closed_with())
            assert got == 1002, f"{bad!r}: {got}"
    with ws() as raw:
        raw.close(struct.pack("!H", 1000) + b"\xff\xfe")
        got = rfc6455.code(raw.closed_with())
        assert got == 1007, f"non-UTF-8 reason: {got}"


def closing_by_server(ws: Any) -> None:
    """A close the app starts (junk instead of the auth frame: 4401) is answered by the client's."""
    with ws(authenticated=False) as raw:
        raw.text("not json")
        assert rfc6455.code(raw.closed_with()) == 4401


# (name, in issue 24's bar, test body): the bodies of test_gateway_rfc6455.py, the closing handshake
# split in four above so that one answer does not hide the others.
RAW_TESTS: list[tuple[str, bool, Callable[[Any], None]]] = [
    ("raw: close without a code answered without one or 1000", True, closing_bare),
    ("raw: close codes echoed", False, closing_echo),
    ("raw: bad close payloads -> 1002 / 1007", False, closing_bad),
    ("raw: app's close (4401) completes the handshake", False, closing_by_server),
    (
        "raw: ping/pong, control frame rules",
        True,
        rfc6455.test_ping_is_answered_with_its_payload_and_control_frames_follow_the_rules,
    ),
    (
        "raw: fragments reassembled, 16 KiB bound",
        True,
        rfc6455.test_fragmented_messages_are_reassembled_within_the_bound,
    ),
    ("raw: invalid UTF-8 -> 1007", True, rfc6455.test_a_text_message_that_is_not_utf_8_closes_with_1007),
    (
        "raw: oversize -> 1009 from the header",
        True,
        rfc6455.test_an_oversize_frame_closes_with_1009_before_its_payload_arrives,
    ),
    ("raw: framing errors -> 1002", False, rfc6455.test_frames_that_break_the_framing_rules_close_with_1002),
    (
        "raw: data after our close dropped, 5 s cut",
        False,
        rfc6455.test_after_the_servers_close_data_is_dropped_until_the_clients_close,
    ),
]


def raw_checks(url: str, token: str) -> dict[str, Outcome]:
    """The raw-socket tests of test_gateway_rfc6455.py, their bodies as written, with a socket
    factory like their `ws` fixture on this server."""
    auth = json.dumps({"type": "auth", "token": token})

    @contextmanager
    def open_socket(authenticated: bool = True, extensions: str | None = None) -> Iterator[rfc6455.Raw]:
        raw = rfc6455.Raw(url, extensions)
        try:
            if authenticated:
                raw.text(auth)
                assert raw.json()["type"] == "auth.ok"
            yield raw
        finally:
            raw.sock.close()

    open_socket.auth = auth  # type: ignore[attr-defined]
    results: dict[str, Outcome] = {}
    with _attempt(results, "raw: handshake 426 / 400"):
        refused = rfc6455.handshake(url, "Sec-WebSocket-Version: 8")
        assert refused[0] == "HTTP/1.1 426 Upgrade Required", refused[0]
        assert "Sec-WebSocket-Version: 13" in refused, refused
        bad_key = rfc6455.handshake(url, "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=")[0]
        assert bad_key == "HTTP/1.1 400 Bad Request", f"bad key: {bad_key}"
    for name, _, test in RAW_TESTS:
        with _attempt(results, name):
            test(open_socket)
    return results


def deflate_checks(url: str) -> dict[str, Outcome]:
    """RFC 7692 against this server: the answer to what Chromium and ws offer, and, when it accepts,
    the frames test_gateway_rfc7692.py holds our class to (before any auth: the server decides)."""
    results: dict[str, Outcome] = {}
    answer = rfc7692._answer(url, "permessage-deflate; client_max_window_bits")
    results["rfc7692: answer to ws/Chromium's offer"] = (None, str(answer))
    with _attempt(results, "rfc7692: RSV1 without the extension -> 1002"):
        rfc7692.test_without_an_offer_rsv1_is_a_protocol_error(url)
    if answer is None:
        results["rfc7692: compressed frames that break the rules"] = (None, "declined: nothing to check")
        return results
    cases: dict[str, tuple[list[dict[str, Any]], int]] = {
        "inflates past 16 KiB": ([{"payload": rfc7692.deflate(b'"' + b" " * 2**20 + b'"'), "rsv": 0x40}], 1009),
        "does not inflate": ([{"payload": b"\xff\xff\xff\xff", "rsv": 0x40}], 1007),
        "not UTF-8 once inflated": ([{"payload": rfc7692.deflate(b'{"type": "\xff"}'), "rsv": 0x40}], 1007),
        "RSV1 on a continuation": (
            [
                {"payload": rfc7692.deflate(b'{"type"'), "rsv": 0x40, "fin": False},
                {"payload": b"x", "rsv": 0x40, "opcode": 0},
            ],
            1002,
        ),
    }
    with _attempt(results, "rfc7692: compressed frames that break the rules"):
        for name, (frames, expected) in cases.items():
            raw = rfc6455.Raw(url, "permessage-deflate")
            with raw.sock:
                for sent in frames:
                    raw.send(sent.pop("opcode", rfc6455.TEXT), sent.pop("payload"), **sent)
                got = rfc6455.code(raw.closed_with())
                assert got == expected, f"{name}: {got} (want {expected})"
    return results


def sigterm_checks(
    server: Server, env: dict[str, str], token: str, node: Path | None, browser: real.Chromium | None
) -> dict[str, Outcome]:
    """The tests' SIGTERM checks: a socket open at SIGTERM is closed with 1001, cleanly."""
    results: dict[str, Outcome] = {}
    if node is not None:
        with serving(server, env, 1) as (url, proc):
            client = subprocess.Popen(
                ["node", str(node / "client.js"), url, token, "sigterm"], cwd=node, stdout=subprocess.PIPE, text=True
            )
            assert client.stdout is not None
            ready = client.stdout.readline().strip() == "ready"
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            out, _ = client.communicate(timeout=30)
            took = time.monotonic() - started
            stop(proc)
        seen = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        observed = (seen.get("code"), seen.get("errors"), seen.get("timeout"))
        results["node ws: SIGTERM -> 1001"] = (
            ready and observed == (1001, [], None),
            f"code {observed[0]}, errors {observed[1]}, client timeout {observed[2]}, after {took:.1f} s",
        )
    if browser is not None:
        with serving(server, env, 1) as (url, proc):
            real._open_in_browser(browser, url, token)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            seen = browser.evaluate(real.BROWSER_CLOSED)
            took = time.monotonic() - started
            stop(proc)
        observed3 = (seen.get("code"), seen.get("clean"), seen.get("errors"))
        results["chromium: SIGTERM -> 1001"] = (
            observed3 == (1001, True, 0),
            f"code {observed3[0]}, clean {observed3[1]}, errors {observed3[2]}, after {took:.1f} s"
            + (" (the page gave up at 8 s)" if seen.get("timeout") else ""),
        )
    return results


def check(
    server: Server, env: dict[str, str], token: str, node: Path | None, browser: real.Chromium | None
) -> dict[str, Outcome]:
    results: dict[str, Outcome] = {}
    with serving(server, env, 1) as (url, _):
        if node is not None:
            with _attempt(results, "node ws checks ran"):
                results |= node_checks(node, url, token)
        if browser is not None:
            with _attempt(results, "chromium checks ran"):
                results |= chromium_checks(browser, url, token)
        results |= raw_checks(url, token)
        with _attempt(results, "rfc7692 checks ran"):
            results |= deflate_checks(url)
    with _attempt(results, "SIGTERM checks ran"):
        results |= sigterm_checks(server, env, token, node, browser)
    return {name: outcome for name, outcome in results.items() if outcome != (True, "") or " ran" not in name}


# --- the figures --------------------------------------------------------------------------------


def measure(server: Server, env: dict[str, str], db_url: str, secret: str, args: argparse.Namespace) -> dict[str, Any]:
    idle_users = tokens(db_url, secret, "customer", args.idle)
    pairs = make_pairs(db_url, secret, args.pairs, 3) if args.pairs else []
    with serving(server, env, args.workers) as (url, proc):
        pids = server_pids(proc.pid)
        figures: dict[str, Any] = {"processes": len(pids)}
        try:
            figures |= asyncio.run(idle_phase(url, idle_users, pids, 5.0))
        except Exception as exc:
            figures["idle_error"] = f"{type(exc).__name__}: {str(exc)[:160]}"
        if pairs:
            try:
                figures |= asyncio.run(active_phase(url, pairs, args.seconds, 1.0, pids))
            except Exception as exc:
                figures["active_error"] = f"{type(exc).__name__}: {str(exc)[:160]}"
    return figures


# --- the run ------------------------------------------------------------------------------------


@contextmanager
def databases() -> Iterator[tuple[str, str]]:
    """(database url, valkey url): a database of our own beside DATABASE_URL's, or embedded servers."""
    pg_url, valkey_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not (pg_url and valkey_url):
        with servers() as urls:
            yield urls
        return
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(OWN_DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(OWN_DB)))
    db_url = make_conninfo(pg_url, dbname=OWN_DB)
    migrate.migrate(db_url)
    try:
        yield db_url, valkey_url
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(OWN_DB)))


# What issue 24 (item 1) holds every server to: a code-less close, 1007, fragments, ping/pong, 1009,
# 1001 on SIGTERM, as real clients and the raw socket see them. The other rows are reported beside.
BAR = {
    *(f"node ws: {s}" for s in ("bare", "fragments", "fragments-over", "ping", "utf8", "oversize")),
    "node ws: oversize, no deflate",
    "node ws: SIGTERM -> 1001",
    *(f"chromium: {s}" for s in ("bare", "oversize")),
    "chromium: SIGTERM -> 1001",
    *(name for name, in_bar, _ in RAW_TESTS if in_bar),
}


def print_table(names: list[str], results: dict[str, dict[str, Outcome]]) -> None:
    checks: list[str] = []
    for outcome in results.values():
        checks += [c for c in outcome if c not in checks]
    checks.sort(key=lambda c: c not in BAR)  # the bar first, in the order run
    mark = {True: "PASS", False: "FAIL", None: "info"}
    print("\n| check | bar | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for name in checks:
        cells = []
        for server in names:
            passed, detail = results.get(server, {}).get(name, (None, "-"))
            cells.append(detail if passed is None else mark[passed])
        print(f"| {name} | {'yes' if name in BAR else ''} | " + " | ".join(cells) + " |")
    verdicts = []
    for server in names:
        bar = [results.get(server, {}).get(name, (None, ""))[0] for name in checks if name in BAR]
        n_failed, n_missing = sum(p is False for p in bar), sum(p is None for p in bar)
        verdicts.append("MET" if bar and all(bar) else f"NOT MET ({n_failed} failed, {n_missing} not run)")
    print("| **issue 24's bar** | | " + " | ".join(verdicts) + " |")
    for server in names:
        failed = [(c, d) for c, (p, d) in results.get(server, {}).items() if p is False]
        if failed:
            print(f"\n{server}: {len(failed)} check(s) failed")
            for name, detail in failed:
                print(f"  - {name}: {detail}")


def print_figures(figures: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\nfigures: {args.workers} worker processes each, {args.idle} idle sockets, "
        f"{args.pairs} pairs at 1 msg/s for {args.seconds:g} s; {os.cpu_count()} CPUs shared with the client"
    )
    print("| server | KB per idle socket | opened/s | idle CPU % | CPU ms/msg | p50 ms | p99 ms | lost |")
    print("|---|---|---|---|---|---|---|---|")
    for name, f in figures.items():
        if "kb_per_socket" not in f:
            print(f"| {name} | {f.get('idle_error', '-')} | | | | | | |")
            continue
        active = (
            "| {:.2f} | {:.1f} | {:.1f} | {} ".format(
                f["gateway_cpu_ms_per_message"], f["p50_ms"], f["p99_ms"], f["sent"] - f["received"]
            )
            if "sent" in f
            else f"| {f.get('active_error', '-')} | | | "
        )
        print(
            f"| {name} | {f['kb_per_socket']:.1f} | {f['opened_per_second']:.0f} | {f['idle_cpu_percent']:.2f} "
            + active
            + "|"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated server names (default: all installed)")
    parser.add_argument("--checks", action=argparse.BooleanOptionalAction, default=True, help="run the checks")
    parser.add_argument("--idle", type=int, default=500, help="idle sockets for the memory figure (0: none)")
    parser.add_argument("--pairs", type=int, default=100, help="chat pairs for CPU per message (0: none)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the active phase")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for the figures")
    parser.add_argument("--gunicorn-site", type=Path, help="a directory with another gunicorn, measured stock too")
    parser.add_argument("--chromium", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    wanted = {n for n in args.only.split(",") if n}
    chosen: list[Server] = []
    for server in candidates(args.gunicorn_site):
        if wanted and server.name not in wanted:
            continue
        version = installed(server)
        if version is None:
            print(f"SKIP {server.name}: {server.needs} is not installed (pip install it to evaluate)")
            continue
        print(f"{server.name}: {server.needs} {version}; {server.options}")
        chosen.append(server)
    if not chosen:
        sys.exit("no server to run")

    node = browser = None
    if args.checks:
        node = node_ready()
        if node is None:
            print("SKIP the Node ws checks: node/npm missing or `npm install ws` failed")
        binary = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
        if not args.chromium or binary is None:
            print("SKIP the Chromium checks: chromium is not installed (Debian: apt-get install chromium)")
        else:
            try:
                browser = real.Chromium(shutil.which(binary) or binary)
            except (RuntimeError, OSError, requests.RequestException, StopIteration) as exc:
                print(f"SKIP the Chromium checks: headless chromium would not start here: {exc}")

    secret = secrets.token_urlsafe(48)
    results: dict[str, dict[str, Outcome]] = {}
    figures: dict[str, dict[str, Any]] = {}
    try:
        with databases() as (db_url, valkey_url):
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": os.environ.get("HOME", "/root"),
                "DATABASE_URL": db_url,
                "REDIS_URL": valkey_url,
                "AUTH_JWT_SECRET": secret,
                "APP_ENV": "test",
                "LOG_FORMAT": "json",
                "LOG_LEVEL": "WARNING",
                "DB_POOL_MAX": "16",
            }
            token = tokens(db_url, secret, "customer", 1)[0][1]
            for server in chosen:
                if args.checks:
                    started = time.monotonic()
                    try:
                        results[server.name] = check(server, env, token, node, browser)
                    except Exception as exc:
                        results[server.name] = {"server started": (False, f"{type(exc).__name__}: {str(exc)[:300]}")}
                    print(f"checked {server.name} in {time.monotonic() - started:.0f} s", flush=True)
                if args.idle or args.pairs:
                    try:
                        figures[server.name] = measure(server, env, db_url, secret, args)
                    except Exception as exc:
                        figures[server.name] = {"idle_error": f"{type(exc).__name__}: {str(exc)[:200]}"}
                    print(f"measured {server.name}: {json.dumps(figures[server.name], default=str)}", flush=True)
    finally:
        if browser is not None:
            browser.close()
    if results:
        print_table([s.name for s in chosen], results)
    if figures:
        print_figures(figures, args)


if __name__ == "__main__":
    main()
