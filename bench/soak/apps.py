"""The simulated apps: an HTTP client that behaves like the apps behind an ingress (another replica on
a refused connection, retries on 5xx) and a WebSocket that reconnects and re-syncs as
docs/realtime.md tells the apps to. Everything they are told lands in one shared `Record`.

They run as tasks on one event loop (`Crowd`), as a phone runs its app: with a thread per socket
and per person, 300 customers and 110 mitras were ~1,500 threads, and after a gateway kill hundreds
of them woke at once on this 2-core machine (load average 465-944), so the harness, not the
product, set the pace of the hour."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import socket as pysocket
import threading
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidHandshake

from bench.soak.checker import ONCE_EVENTS, Heard, Sent, Shown

START = time.monotonic()
# A re-sync that gets no answer is tried again (a chat screen shows "couldn't load" and retries)
# for this long: a re-sync given up after one failed read left 4 messages unseen at 300 customers.
RESYNC_PATIENCE = 300.0
# An idle pooled connection is dropped before the servers drop it (gunicorn's keepalive is 5 s): a
# request written on a connection the server is closing that instant meets a reset, not an answer,
# and would count as a try no replica answered.
CLIENT_KEEPALIVE_SECONDS = 4.0
CLIENT_CONNECTIONS = 32  # per app, as a phone's HTTP stack allows a few dozen


def clock() -> float:
    """Seconds since the harness started (every log line and fault window uses it)."""
    return time.monotonic() - START


async def waited(event: asyncio.Event, seconds: float) -> bool:
    """Whether `event` was set within `seconds` (threading.Event.wait's answer, for a task)."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False
    return True


class Crowd:
    """The event loop every app runs on, in a thread of its own, so the harness's main thread (load
    lines, the fault injector) stays a plain thread that hands it work."""

    def __init__(self, record: Record) -> None:
        self.record = record
        self.loop = uvloop.new_event_loop()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.client: httpx.AsyncClient | None = None  # for the fake Xendit's callbacks
        self.lag = 0.0
        self.clients: list[httpx.AsyncClient] = []
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="apps")
        self.thread.start()
        self.run(self._open())

    async def _open(self) -> None:
        self.tls = httpx.create_ssl_context()  # one for every client: each would load the CA bundle
        self.client = self.new_client()
        self.spawn(self._watch_lag())

    async def _watch_lag(self) -> None:
        """How late the loop wakes a task: every time in the apps' log is when a task ran, so a
        late loop moves them (and an 8-s wait for an acknowledgement includes the lag)."""
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.25)
            self.lag = max(self.lag, time.monotonic() - before - 0.25)

    def worst_lag(self) -> float:
        """The loop's largest lag since the last call (seconds)."""
        worst, self.lag = self.lag, 0.0
        return worst

    def new_client(self) -> httpx.AsyncClient:
        """An app's own HTTP client, as each phone has its own connections. One client shared by
        every app spent a third of the harness's CPU in httpcore's pool, which checks each of its
        hundreds of idle connections (a poll per connection) on every request."""
        client = httpx.AsyncClient(
            timeout=15.0,
            trust_env=False,
            verify=self.tls,
            # As many kept alive as may be open: httpcore 1.0.9 closes "surplus" idle connections by
            # counting all of them (idle or not) against max_keepalive_connections, and can pick
            # one it has just handed to a request (encode/httpcore#1110); a mitra with three chats
            # open had more than 8 requests in flight after a stall of the harness's loop.
            limits=httpx.Limits(
                max_connections=CLIENT_CONNECTIONS,
                max_keepalive_connections=CLIENT_CONNECTIONS,
                keepalive_expiry=CLIENT_KEEPALIVE_SECONDS,
            ),
        )
        self.clients.append(client)
        return client

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A task the crowd holds until it ends (the loop keeps only weak references)."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # A harness fault: logged with its traceback, and the run goes on with the others, but
            # it fails at the end (an app that stopped listening makes the checks untrustworthy).
            trace = "".join(traceback.format_exception(exc)).rstrip()
            self.record.log("harness", f"HARNESS ERROR {type(exc).__name__}: {exc}\n{trace}")
            self.record.count("harness errors")

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float | None = None) -> Any:
        """Run `coro` on the crowd's loop from another thread and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        """Every app's tasks cancelled, their HTTP clients closed, the loop stopped."""
        self.run(self._close(), timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)

    async def _close(self) -> None:
        tasks = list(self.tasks)  # `run` wraps this coroutine in a task of its own, not among them
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(c.aclose() for c in self.clients), return_exceptions=True)


@dataclass
class Reply:
    at: float  # when the answer (or the failure) came
    who: str
    method: str
    path: str
    status: int  # 0: no answer from any replica
    sent_at: float  # when this try was sent: a try in flight during a fault met it
    error: str = ""  # for no answer: what the client raised (a reset, a timeout, ...)


@dataclass
class Record:
    """Every app's log, shared: what was sent, shown and heard, and every HTTP answer. Written on the
    crowd's loop, read by the main thread under the lock."""

    sent: list[Sent] = field(default_factory=list)
    shown: list[Shown] = field(default_factory=list)
    heard: list[Heard] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def log(self, who: str, text: str) -> str:
        line = f"{clock():8.2f} {who}: {text}"
        with self.lock:
            self.lines.append(line)
        return line

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counters[name] = self.counters.get(name, 0) + n


# A try whose connection this client's own pool closed under it (no server was involved), marked so
# the checker tells it from a try no replica answered. httpcore 1.0.9 can close a pooled connection
# it has just handed to a request that has not started yet (encode/httpcore#1110, open): the
# request then reads from a socket closed here, anyio's ClosedResourceError. An app's HTTP stack
# retries such a try at once, as Http does.
CLOSED_HERE = "closed by this client's pool (encode/httpcore#1110)"


class _PingMetCleanClose(logging.Filter):
    """websockets 17.4 logs a traceback ("keepalive ping failed") when its keepalive ping meets a
    close handshake that completed in the same instant (its code says this cannot happen; a late
    loop lets it): the socket closed cleanly, as the app wanted. Other keepalive failures still log."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (record.msg == "keepalive ping failed" and isinstance(exc, ConnectionClosedOK))


logging.getLogger("websockets.client").addFilter(_PingMetCleanClose())


def causes(exc: BaseException) -> str:
    """An exception and what it came from (httpx's ReadError wraps httpcore's, which wraps anyio's
    or the socket's error: only the last says whether the peer reset the connection or this side
    closed it)."""
    parts: list[str] = []
    seen: BaseException | None = exc
    closed_here = False
    while seen is not None and len(parts) < 5:
        closed_here = closed_here or isinstance(seen, anyio.ClosedResourceError)
        parts.append(f"{type(seen).__name__}: {str(seen)[-100:]}")
        seen = seen.__cause__ or seen.__context__
    return (f"{CLOSED_HERE}: " if closed_here else "") + " <- ".join(parts)


class Http:
    """The apps' REST client: replicas in turn; a refused connection or a 5xx is tried again (on the
    next replica) for up to `patience` seconds, as the apps retry; every answer is recorded."""

    def __init__(
        self, record: Record, who: str, bases: list[str], client: httpx.AsyncClient, patience: float = 45.0
    ) -> None:
        self.record, self.who, self.bases, self.client, self.patience = record, who, bases, client, patience
        # Each app is a phone of its own behind the ingress (the cluster trusts one proxy hop), so
        # limits per address (anonymous sign-ups, OTP) meet one user each, as in production: from
        # one shared 127.0.0.1, 270 of 300 customers were refused sign-up and the hour ran with 30.
        digest = hashlib.sha256(who.encode()).digest()
        self.address = f"10.{digest[0]}.{digest[1]}.{digest[2] or 1}"
        self.token = ""
        self.refresh_token = ""
        self.refreshing = asyncio.Lock()
        self._turn = random.randrange(len(bases))

    async def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        """The response (or None when no replica answered in time)."""
        return (await self.call_counted(method, path, body, headers))[0]

    async def call_counted(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[httpx.Response | None, int]:
        """(the response or None, how many times the request was sent and may have been carried
        out: a 401 was not)."""
        deadline = time.monotonic() + self.patience
        last: httpx.Response | None = None
        sent = 0
        while time.monotonic() < deadline:
            sent += 1
            self._turn += 1
            base = self.bases[self._turn % len(self.bases)]
            h = {"X-Forwarded-For": self.address, **(headers or {})}
            used = self.token
            if used:
                h["Authorization"] = f"Bearer {used}"
            sent_at = clock()
            try:
                last = await self.client.request(method, base + path, json=body, headers=h)
            except httpx.HTTPError as exc:
                self._note(method, path, 0, sent_at, causes(exc))
                await asyncio.sleep(0.5)
                continue
            self._note(method, path, last.status_code, sent_at)
            if last.status_code == 401 and self.refresh_token and not path.endswith("/refresh"):
                sent -= 1
                await self.refresh(used)
                continue
            if last.status_code < 500:
                return last, sent
            await asyncio.sleep(min(2.0, float(last.headers.get("Retry-After") or 1)))
        return last, sent

    def _note(self, method: str, path: str, status: int, sent_at: float, error: str = "") -> None:
        with self.record.lock:
            self.record.replies.append(Reply(clock(), self.who, method, path, status, sent_at, error))

    async def refresh(self, failed: str | None = None) -> None:
        """A new token pair, one refresh at a time, and none when another caller already replaced
        the access token that failed (`failed`). An app refreshes once for all its sockets and
        requests: a refresh token two rotations old is reuse (lib/auth/sessions.rotate) and ends the
        sign-in. The 60-minute run found it: a mitra's two sockets and a request, all told 4401 when
        the first token expired, refreshed three times at once and were signed out."""
        async with self.refreshing:
            if failed is not None and self.token != failed:
                return
            token, self.token = self.token, ""
            r = await self.call("POST", "/api/shared/auth/refresh", {"refresh_token": self.refresh_token})
            if r is not None and r.status_code == 200:
                self.signed_in(r.json()["data"])
            else:
                self.token = token

    def signed_in(self, pair: dict[str, Any]) -> None:
        self.token, self.refresh_token = pair["access_token"], pair["refresh_token"]

    async def data(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        r = await self.call(method, path, body, headers)
        if r is None or r.status_code >= 300 or not r.content:
            return None
        return r.json().get("data")


OnFrame = Callable[["Socket", dict[str, Any]], Awaitable[None]]


class Socket:
    """One WebSocket of an app (its general channel, or a chat session), kept open: a close other than
    4403 or our own is followed by a reconnect (the other gateway first) and a re-sync."""

    def __init__(self, app: App, session_id: str | None, on_frame: OnFrame, on_reconnect: Callable[[], None]) -> None:
        self.app, self.session_id, self.on_frame, self.on_reconnect = app, session_id, on_frame, on_reconnect
        self.ws: ClientConnection | None = None
        self.connection = ""
        self.stopping = False
        self.auth_token = ""  # the access token of the last authentication, refreshed on a 4401
        self.opened = asyncio.Event()
        self.task = app.crowd.spawn(self._run())

    @property
    def label(self) -> str:
        return f"{self.app.who}/{(self.session_id or 'general')[:8]}"

    async def _connect(self, url: str) -> ClientConnection | None:
        try:
            # Keepalive as a phone app would set it; at the default 20 s a busy harness missed its
            # own pongs and closed sockets 1011 (a run without any keepalive fared no better).
            ws = await connect(url, open_timeout=10, close_timeout=2, max_size=2**20, ping_interval=30, ping_timeout=60)
        except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed):  # closed mid-handshake: a kill
            return None
        used = self.auth_token = self.app.http.token
        auth = {"type": "auth", "token": used}
        if self.session_id:
            auth["session_id"] = self.session_id
        try:
            await ws.send(json.dumps(auth))
            first = json.loads(await asyncio.wait_for(ws.recv(), 15))
        except (ConnectionClosed, TimeoutError, OSError) as exc:
            code = exc.rcvd.code if isinstance(exc, ConnectionClosed) and exc.rcvd else None
            self.app.record.log(self.app.who, f"{self.label} auth failed ({code or type(exc).__name__})")
            if code == 4403:
                self.stopping = True
            elif code == 4401:
                await self.app.http.refresh(used)
            await ws.close()
            return None
        if first.get("type") != "auth.ok":
            await ws.close()
            return None
        return ws

    async def _run(self) -> None:
        attempt = 0
        while not self.stopping:
            urls = self.app.gateways
            ws = await self._connect(urls[(self.app.gateway_turn + attempt) % len(urls)])
            attempt += 1
            if ws is None:
                await asyncio.sleep(min(3.0, 0.3 * attempt))
                continue
            if self.stopping:  # closed while it was opening
                await ws.close()
                break
            self.ws = ws
            self.connection = f"{self.label}#{attempt}"
            self.opened.set()
            if attempt > 1:
                self.app.record.count("reconnects")
            # Every join re-reads, the first one too: the chat screen opens with its messages, and
            # what the other party sent between pairing and this join came before the socket was
            # there to hear it (the 60-minute run lost a mitra's first message without this read).
            self.on_reconnect()
            attempt = 0
            try:
                async for raw in ws:
                    frame = json.loads(raw)
                    self._heard(frame)
                    await self.on_frame(self, frame)
            except (ConnectionClosed, OSError, ValueError):
                pass
            finally:
                self.ws = None
                self.opened.clear()
                if ws.close_code is None:  # left for a frame it could not read: closed by us
                    await ws.close()
            code = ws.close_code or 1006
            if not self.stopping:
                self.app.record.log(self.app.who, f"{self.label} closed {code}; reconnecting")
            if code == 4403:
                break
            if code == 4401:
                await self.app.http.refresh(self.auth_token)
            attempt = 1

    def _heard(self, frame: dict[str, Any]) -> None:
        kind, data = frame.get("type"), frame.get("data") or {}
        if kind not in ONCE_EVENTS:
            return
        key = str(data.get("extension_id") or data.get("session_id") or "")
        if kind == "extension.resolved":
            key = f"{key}:{data.get('status')}"
        elif kind == "session.extended":
            key = f"{key}:{data.get('expires_at')}"
        line = self.app.record.log(self.app.who, f"{self.connection} heard {kind} {key}")
        with self.app.record.lock:
            self.app.record.heard.append(Heard(self.connection, self.app.user_id, str(kind), key, line))

    async def send(self, frame: dict[str, Any]) -> bool:
        ws = self.ws
        if ws is None:
            return False
        try:
            await ws.send(json.dumps(frame))
            return True
        except (ConnectionClosed, OSError):
            return False

    def vanish(self) -> bool:
        """The phone drops off the network: the TCP connection ends with no close frame. Run on the
        crowd's loop (`Crowd.run`), so the socket cannot be closed, and its descriptor reused by
        another connection, between looking it up and shutting it down."""
        ws = self.ws
        raw = ws.transport.get_extra_info("socket") if ws is not None else None
        if raw is None:
            return False
        try:
            twin = pysocket.socket(fileno=os.dup(raw.fileno()))
        except OSError:
            return False
        try:
            twin.shutdown(pysocket.SHUT_RDWR)  # the connection, under the loop's own descriptor
        except OSError:
            return False
        finally:
            twin.close()
        return True

    async def close(self) -> None:
        self.stopping = True
        ws = self.ws
        if ws is not None:
            await ws.close()


class App:
    """A signed-in user's app: REST, its sockets, and the messages it shows per session."""

    def __init__(
        self, crowd: Crowd, record: Record, who: str, user_type: str, publics: list[str], gateways: list[str]
    ) -> None:
        self.crowd, self.record, self.who, self.user_type = crowd, record, who, user_type
        self.http = Http(record, who, publics, crowd.new_client())
        self.gateways = gateways
        self.gateway_turn = random.randrange(len(gateways))
        self.user_id = ""
        self.sockets: list[Socket] = []
        self.screen: dict[str, list[str]] = {}  # session -> message ids in the order they came
        self.acks: dict[str, asyncio.Event] = {}
        self.acked: dict[str, dict[str, Any]] = {}
        # Messages this app sent in each chat: a client_message_id names one message for good, also
        # when the app opens the same chat again (a purchase that finds the last chat still closing).
        self.numbers: Counter[str] = Counter()

    def show(self, session_id: str, msg: dict[str, Any], how: str, connection: str) -> bool:
        """Put a message of the other party on screen; True when it is new there. It moves the
        re-sync cursor: the newest message the server gave us from the other party (our own
        acknowledgements do not move it, see `resync`)."""
        ids = self.screen.setdefault(session_id, [])
        new = msg["id"] not in ids
        if new:
            ids.append(msg["id"])
        with self.record.lock:
            self.record.shown.append(
                Shown(self.user_id, session_id, msg["id"], msg["client_message_id"], how, connection)
            )
        return new

    def cursor(self, session_id: str) -> str | None:
        ids = self.screen.get(session_id, [])
        return ids[-1] if ids else None

    async def resync(self, session_id: str, after: str | None) -> int:
        """What the app does after any reconnect and on `resync`: re-read the chat, then the messages
        after `after`, the cursor as it stood when the link was found broken. docs/realtime.md says
        "the last message it has"; an app counting its own message acknowledged during the gap
        there skips what the other party sent before it (seed 11 lost 15 that way; see
        docs/reliability.md), so the cursor is the last message received from the other party."""
        self.record.count("resyncs")
        found = await self._resync(session_id, after)
        # Each re-read in the log with its cursor, so a lost message's history shows which re-reads
        # could have found it.
        self.record.log(self.who, f"re-sync of {session_id[:8]} after {after}: {found} new")
        return found

    async def _resync(self, session_id: str, after: str | None) -> int:
        await self.http.data("GET", f"/api/shared/chat/{session_id}/info")
        found, page_after, give_up = 0, after, time.monotonic() + RESYNC_PATIENCE
        while True:
            r = await self.http.call(
                "GET",
                f"/api/shared/chat/{session_id}/messages?limit=100" + (f"&after={page_after}" if page_after else ""),
            )
            # Unanswered in the Http's patience, or a token its refresh could not replace in that
            # time (the refresh unanswered too): again, from the same place.
            if r is None or r.status_code >= 500 or r.status_code == 401:
                status = r.status_code if r is not None else "no answer"
                self.record.log(self.who, f"re-sync of {session_id[:8]} after {page_after}: {status}; again")
                if time.monotonic() > give_up:
                    self.record.log(self.who, f"re-sync of {session_id[:8]} GAVE UP")
                    return found
                await asyncio.sleep(2)
                continue
            if r.status_code >= 300:
                self.record.log(self.who, f"re-sync of {session_id[:8]} refused {r.status_code}")
                return found
            page = r.json()["data"]
            if not page["items"]:
                return found
            for m in page["items"]:
                if m["sender_type"] != self.user_type:
                    found += self.show(session_id, m, "resync", "rest")
            page_after = page["items"][-1]["id"]
            if not page.get("has_more"):
                return found

    async def send_message(self, chat: Socket | None, session_id: str) -> None:
        """A new message, over the session socket when it is up (else REST), sent again with the same
        client_message_id until acknowledged, as the apps do."""
        self.numbers[session_id] += 1
        n = self.numbers[session_id]
        cmid = f"{self.who}-{session_id[:8]}-{n}"
        content = f"pesan {n} dari {self.who}"
        event = self.acks[cmid] = asyncio.Event()
        deadline = time.monotonic() + 45
        acked, via, log, tries = False, "ws", "", 0
        while time.monotonic() < deadline and not acked:
            if chat is not None and random.random() < 0.8:
                await chat.send({"type": "typing"})
                frame = {"type": "message.send", "client_message_id": cmid, "content": content}
                if await chat.send(frame):
                    tries += 1
                    if await waited(event, 8):
                        msg = self.acked.pop(cmid)
                        acked, via = True, "ws"
                        log = self.record.log(self.who, f"message.sent {msg['id']} {cmid} (ws, try {tries})")
                        break
            r, sent = await self.http.call_counted(
                "POST", f"/api/shared/chat/{session_id}/messages", {"client_message_id": cmid, "content": content}
            )
            tries += sent
            if r is not None and r.status_code in (200, 201):
                msg = r.json()["data"]
                acked, via = True, "rest"
                log = self.record.log(self.who, f"{r.status_code} {msg['id']} {cmid} (rest, try {tries})")
            elif r is not None and r.status_code == 409:
                break  # the chat is over or paused: the app stops sending
        self.acks.pop(cmid, None)
        with self.record.lock:
            self.record.sent.append(
                Sent(session_id, self.user_id, cmid, via, acked, msg["id"] if acked else None, log, tries)
            )

    async def on_chat_frame(self, sock: Socket, frame: dict[str, Any]) -> None:
        """The frames every chat screen handles the same way: acks, messages with receipts, resyncs."""
        kind, data = frame.get("type"), frame.get("data") or {}
        if kind == "message.sent":
            event = self.acks.get(data.get("client_message_id", ""))
            if event is not None:
                self.acked[data["client_message_id"]] = data
                event.set()
        elif kind == "message.new" and data.get("sender_type") != self.user_type:
            if self.show(data["session_id"], data, "live", sock.connection):
                self.record.log(
                    self.who, f"{sock.connection} heard message.new {data['id']} {data['client_message_id']}"
                )
            await sock.send({"type": "message.delivered", "message_id": data["id"]})
            if random.random() < 0.5:
                await sock.send({"type": "message.read", "up_to_message_id": data["id"]})
            self.record.count("delivered live")
        elif kind == "typing":
            self.record.count("typing heard")
        elif kind == "message.status":
            self.record.count(f"receipts {data.get('status')}")
        elif kind == "resync" and sock.session_id:
            self.record.log(self.who, f"{sock.connection} heard resync {data.get('reason')}")
            after = self.cursor(sock.session_id)  # as it stands now, before what arrives next
            self.crowd.spawn(self.resync(sock.session_id, after))

    def open(self, session_id: str | None, on_frame: OnFrame) -> Socket:
        sock = Socket(self, session_id, on_frame, lambda: self._after_reconnect(session_id))
        self.sockets.append(sock)
        return sock

    def _after_reconnect(self, session_id: str | None) -> None:
        if session_id:
            self.crowd.spawn(self.resync(session_id, self.cursor(session_id)))

    async def register_device(self) -> None:
        """An FCM token, so what finds no socket is pushed (to the fake FCM)."""
        await self.http.call(
            "PUT", "/api/shared/devices/fcm-token", {"token": f"fcm-{self.who}", "platform": "android"}
        )

    def live_sockets(self) -> list[Socket]:
        return [s for s in list(self.sockets) if not s.stopping and s.opened.is_set()]
