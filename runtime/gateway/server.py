"""The gateway of one realtime process: its lifecycle (startup, SIGTERM) and each socket from the
auth frame to its close, its client frames run in order (functions/realtime/, blocking ones on a
bounded thread pool: lib is synchronous), with the other modules of the package wired in.

Every client frame, the auth frame too, goes through lib/inputs.py (the rules REST bodies follow):
junk before auth closes with 4401, junk after auth is answered by an `error` frame, and nothing a
client sends closes a socket with 1011. Fair share: WS_SOCKETS_PER_USER sockets per user on a
process (one more closes the oldest with 4429, connections.py), WS_OPENS_PER_MINUTE sockets opened
per user and process (more are held a while, then closed 1013), WS_FRAMES_PER_SECOND frames per
socket (a token bucket in memory; the excess is dropped with at most one RATE_LIMITED error frame a
second), a socket that keeps sending junk is closed 1008 (and its user opens none here for a
minute), and MESSAGES_PER_MINUTE per sender in lib/chat/messages.py, which REST shares (a socket told
RATE_LIMITED for a frame type hears it from the gateway alone until its retry_after). The loop's
own lag is measured (halobestie_gateway_loop_lag_seconds).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import falcon
import marshmallow
from falcon.asgi import WebSocket

from lib import sockets
from lib.auth.tokens import APP_AUDIENCE
from lib.chat.events import frame as server_frame
from lib.chat.sessions import for_participant
from lib.errors import ApiError, RateLimited, ValidationFailed
from lib.frames import MAX_FRAME_BYTES, FrameCtx
from lib.inputs import parse_json, safe_name, scrub
from lib.metrics import m
from lib.services import Services
from runtime.gateway.batching import FAILED, Batches
from runtime.gateway.connections import (
    GOING_AWAY,
    NOT_PARTICIPANT,
    POLICY,
    QUEUE_LIMIT,
    TOO_BIG,
    TRY_AGAIN,
    UNAUTHORIZED,
    Connection,
    Connections,
    close_unregistered,
)
from runtime.gateway.delivery import Delivery
from runtime.gateway.discovery import FrameModule
from runtime.gateway.presence import Presence

log = logging.getLogger("runtime.gateway")  # one logger for the realtime process (DEPLOY.md)

QUIET_SECONDS = 1.0  # a socket over its frame rate hears RATE_LIMITED at most once this long
# A junk frame (not JSON, an unknown type, binary, breaking its schema) costs its socket this many
# frames' time: the socket is not read for REFUSED_FRAME_COST / WS_FRAMES_PER_SECOND seconds (half a
# second by default). No app sends junk; a hostile socket sends it with every other frame, and it
# then costs a parse and an answer twice a second instead of at the full frame rate (make
# bench-realtime, docs/limits.md). Refusals of the moment (SESSION_PAUSED, RATE_LIMITED) cost nothing,
# except a frame of a type the socket was told to hold back (RATE_LIMITED) sent before its retry_after.
# Frames no app's code sends (JUNK_LIMIT of them within JUNK_WINDOW) close the socket (connections.py).
REFUSED_FRAME_COST = 10
# What a frame was (Gateway._handle): junk pauses its socket; hostile also counts to JUNK_LIMIT.
ANSWERED, JUNK, HOSTILE = 0, 1, 2
# A socket opened past WS_OPENS_PER_MINUTE is held unread this long (at most) before its close: a
# client that reopens the moment it is closed then costs a handshake every few seconds, not hundreds.
# The hold is drawn between it and twice it: sockets refused together (a flood closed 1008 at once and
# reopened at once) come back spread over seconds, not as one burst of handshakes every five.
OPEN_REFUSAL_HOLD = 5.0
LAG_SAMPLE_SECONDS = 0.1  # how often the loop's lag is sampled
# A user closed 1008 on one gateway process, told to every process: an attacker reopened each
# closed socket at once, and half of those landed on a process that had not barred the user.
BARRED = "gateway:barred"
EXPIRY_SWEEP_SECONDS = 1.0  # a socket whose token expired is closed at most this late


class Gateway:
    def __init__(
        self, services: Services, frames: dict[str, FrameModule], *, pool_size: int = 16, queue_limit: int = QUEUE_LIMIT
    ) -> None:
        self.services = services
        self.frames = frames
        self.auth_timeout = services.settings.realtime_auth_timeout_seconds
        self.pool = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="gateway")
        self.process_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping = False
        self._stopped: asyncio.Future[None] | None = None
        self._presence_task: asyncio.Task[None] | None = None
        self._lag_task: asyncio.Task[None] | None = None
        self._expiry_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.batches = {kind: Batches(self, kind, f.module.handle_batch) for kind, f in frames.items() if f.batched}
        # Hostile sockets that started together are closed 1008 together: their bars leave in one
        # publish, not a pool job each queued before the honest senders' batches.
        self._bars: Batches[str] = Batches(self, "1008 bar", self._publish_bars)
        self.frames_per_second = float(services.settings.ws_frames_per_second)
        self.connections = Connections(
            self.spawn,
            sockets_per_user=services.settings.ws_sockets_per_user,
            opens_per_minute=services.settings.ws_opens_per_minute,
            queue_limit=queue_limit,
        )
        self.delivery = Delivery(services.bus, self.connections, self._threadsafe)
        self.presence = Presence(services, self.connections, self, self.process_id, lambda: self.stopping)

    # --- process lifecycle --------------------------------------------------------------------

    async def startup(self) -> None:
        self.loop = asyncio.get_running_loop()
        log.info("gateway started on %s.%s", type(self.loop).__module__, type(self.loop).__name__)
        s = self.services
        s.revocations.on_revoked(lambda ids: self._threadsafe(self.delivery.revoked, ids))
        s.bus.on_reconnect(lambda: self._threadsafe(self.delivery.relinked))
        s.bus.subscribe(BARRED, lambda user: self._threadsafe(self._barred_elsewhere, user))
        await self.blocking(s.revocations.start)
        self._presence_task = asyncio.create_task(self.presence.refresh_forever())
        self._lag_task = asyncio.create_task(self._watch_lag())
        self._expiry_task = asyncio.create_task(self._expire_forever())

    async def shutdown(self) -> None:
        """SIGTERM: every socket is closed with 1001 so its app reconnects to another replica. The
        worker's signal handler and the ASGI lifespan both call this: the second waits for the first."""
        if self._stopped is None:
            self._stopped = asyncio.ensure_future(self._shutdown())
        await asyncio.shield(self._stopped)

    async def _shutdown(self) -> None:
        self.stopping = True
        conns = self.connections.all()
        await asyncio.gather(
            *(self.connections.close(c, GOING_AWAY, "server restarting") for c in conns), return_exceptions=True
        )
        for task in (self._presence_task, self._lag_task, self._expiry_task):
            if task is not None:
                task.cancel()
        # The sockets' presence goes in one round (not socket by socket as they unregister, which
        # would race the pool's shutdown), so pushes reach their users at once, not 30 s later.
        await self.presence.record(sockets.forget_many, self.presence.entries(conns) + self.presence.unforgotten())
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def _watch_lag(self) -> None:
        """How late the loop wakes a timer: what every socket's next frame waits on this process,
        whatever the cause (a long callback, a flood being read, a CPU shared with others)."""
        assert self.loop is not None
        lag = m().loop_lag
        while True:
            due = self.loop.time() + LAG_SAMPLE_SECONDS
            await asyncio.sleep(LAG_SAMPLE_SECONDS)
            lag.observe(max(0.0, self.loop.time() - due))

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """A background task, held until done (the loop keeps only weak references)."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _barred_elsewhere(self, user: str) -> None:
        """A process (this one too) closed the user's socket 1008: refuse their opens here as well."""
        user_type, _, user_id = user.partition(":")
        if user_id and self.loop is not None:
            self.connections.bar((user_type, user_id), self.loop.time())

    def _publish_bars(self, users: list[str]) -> list[None]:
        self.services.bus.publish_many([(BARRED, user) for user in users])  # never raises: Valkey away bars here only
        return [None] * len(users)

    def _threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        """From a bus or poll thread into the event loop."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    async def blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        assert self.loop is not None
        return await self.loop.run_in_executor(self.pool, fn, *args)

    # --- one socket ---------------------------------------------------------------------------

    async def serve(self, ws: WebSocket) -> None:
        await ws.accept()
        if self.stopping:
            # Accepted to be closed with 1001, which apps treat as "reconnect elsewhere"; a refused
            # handshake (HTTP 403) reads to them as a failure.
            await close_unregistered(ws, GOING_AWAY)
            return
        conn = await self._authenticate(ws)
        if conn is None:
            return
        listening = self._register(conn)
        try:
            if self.services.revocations.is_revoked(conn.principal.session_id):
                # Revoked while this socket was being authenticated, before Delivery.revoked could see it.
                self.connections.close_soon(conn, UNAUTHORIZED, "session ended")
            else:
                # Events published from now on must reach this socket, and pushes must know of it:
                # auth.ok waits for the socket's presence and (briefly: Valkey may be away, and then
                # the app re-syncs anyway) for Valkey to confirm the subscription.
                await self.presence.joined(conn)
                await asyncio.wait([listening], timeout=1.0)  # no thread waits for it
                self.connections.enqueue(
                    conn, server_frame("auth.ok", {**self._who(conn), "session_id": conn.session_id})
                )
            while True:
                text: str | None
                try:
                    text = await ws.receive_text()
                except TypeError:  # a binary frame
                    text = None
                if conn.closing:
                    # Read on and drop: the close handshake needs the client's close frame, which
                    # waits behind what the client sent before it (the receive queue is bounded).
                    continue
                if not self._admit(conn, text):
                    # Read no further until the socket's next frame is within its rate: a flood
                    # then waits in the socket's bounded queue and the kernel's buffers (TCP
                    # pushes back on the sender) instead of costing this process a read and a
                    # drop per frame (beside 100 flooding sockets honest p99 was 188x quiet).
                    await asyncio.sleep(conn.wait(self.frames_per_second))
                    continue
                if text is None:
                    self._refuse(conn, "text_only", {"code": "TEXT_ONLY"})
                    verdict = HOSTILE
                elif len(text.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
                    self.connections.close_soon(conn, TOO_BIG, "frame too large")
                    verdict = ANSWERED
                else:
                    verdict = await self._handle(conn, text)
                if verdict == HOSTILE and conn.junk_over(time.monotonic()):
                    log.info("socket of a %s closed: it kept sending junk", conn.principal.user_type)
                    self.connections.bar(conn.user, asyncio.get_running_loop().time())
                    # Told before the close frame goes out: a reopen on another process finds it there.
                    await self._bars.run(":".join(conn.user))
                    self.connections.close_soon(conn, POLICY, "too many bad frames")
                elif verdict != ANSWERED:
                    await asyncio.sleep(REFUSED_FRAME_COST / self.frames_per_second)
        except (falcon.WebSocketDisconnected, RuntimeError, OSError):
            pass
        finally:
            self._unregister(conn)

    @staticmethod
    def _who(conn: Connection) -> dict[str, Any]:
        return {"user_type": conn.principal.user_type, "user_id": conn.principal.user_id}

    async def _authenticate(self, ws: WebSocket) -> Connection | None:
        """The first frame, within the auth timeout (10 s): {"type": "auth", "token", "session_id"?}.
        Whatever goes wrong, the socket closes with a code the app knows what to do with."""
        try:
            return await self._check_auth(ws)
        except Exception:
            log.exception("a socket's authentication failed")
            await close_unregistered(ws, UNAUTHORIZED)
            return None

    async def _check_auth(self, ws: WebSocket) -> Connection | None:
        try:
            first = parse_json(await asyncio.wait_for(ws.receive_text(), self.auth_timeout))
        except (TimeoutError, ApiError, TypeError, falcon.WebSocketDisconnected):
            await close_unregistered(ws, UNAUTHORIZED)
            return None
        if not isinstance(first, dict) or first.get("type") != "auth" or not isinstance(first.get("token"), str):
            await close_unregistered(ws, UNAUTHORIZED)
            return None
        session_id = first.get("session_id")
        try:
            principal = self.services.verified_tokens.verify(first["token"], APP_AUDIENCE)
            if self.services.revocations.is_revoked(principal.session_id):
                raise ApiError("revoked")
        except ApiError:
            await close_unregistered(ws, UNAUTHORIZED)
            return None
        assert self.loop is not None
        retry = self.connections.open_refused_for((principal.user_type, principal.user_id), self.loop.time())
        if retry:
            m().frames_refused.labels("opens").inc()
            await asyncio.sleep(min(retry, OPEN_REFUSAL_HOLD * random.uniform(1.0, 2.0)))
            await close_unregistered(ws, TRY_AGAIN)
            return None
        if session_id is not None:
            try:
                session_id = str(uuid.UUID(str(session_id)))
                await self.blocking(for_participant, self.services.db, principal, session_id)
            except ValueError:
                await close_unregistered(ws, NOT_PARTICIPANT)
                return None
            except ApiError as exc:  # not a participant (404), or the database is away (503)
                await close_unregistered(ws, TRY_AGAIN if exc.status >= 500 else NOT_PARTICIPANT)
                return None
        now = self.loop.time()
        return Connection(ws, principal, session_id, allowance=self.frames_per_second, refilled=now)

    async def _expire_forever(self) -> None:
        """Each second, the sockets whose token has expired close with 4401 (the app refreshes it
        and reconnects); registered sockets only, so one that expired while connecting goes at the
        first sweep after it registers."""
        while True:
            await asyncio.sleep(EXPIRY_SWEEP_SECONDS)
            try:
                for conn in self.connections.expired(time.time()):
                    self.connections.close_soon(conn, UNAUTHORIZED, "token expired")
            except Exception:  # the sweep goes on: it is every socket's expiry
                log.exception("the token expiry sweep failed")

    def _admit(self, conn: Connection, text: str | None) -> bool:
        """Whether the socket is within WS_FRAMES_PER_SECOND. A frame over it is dropped unread; the
        socket hears RATE_LIMITED at most once per QUIET_SECONDS, so a flood is not echoed back."""
        assert self.loop is not None
        now = self.loop.time()
        if conn.admit(now, self.frames_per_second):
            return True
        m().frames_refused.labels("rate").inc()
        if now - conn.warned >= QUIET_SECONDS:
            conn.warned = now
            error = {"code": "RATE_LIMITED", "message": "Too many frames", "type": _type_of(text)}
            self.connections.enqueue(conn, server_frame("error", {**error, "retry_after_seconds": 1}))
        return False

    def _refuse(self, conn: Connection, reason: str, error: dict[str, Any]) -> None:
        """A frame refused before any handler: counted, and answered with an `error` frame."""
        m().frames_refused.labels(reason).inc()
        self.connections.enqueue(conn, server_frame("error", error))

    async def _handle(self, conn: Connection, text: str) -> int:
        """Handle one frame. HOSTILE: what no app's code sends (not JSON, too deep, text PostgreSQL
        cannot store, an unknown type); JUNK: a frame breaking its schema (an app may pass on what a
        user typed, e.g. a message of spaces), or a frame of a type held back (Connection.held) sent
        before its retry_after; ANSWERED: anything else, a refusal of the moment too
        (SESSION_PAUSED, RATE_LIMITED, NO_SESSION from an app acking on its general socket)."""
        try:
            raw = parse_json(text)  # the rules every REST body follows (lib/inputs.py)
        except ValidationFailed as exc:  # text PostgreSQL cannot store, a number beyond 64 bits
            error = {"code": exc.code, "type": _type_of_parsed(text), "fields": scrub(exc.details.get("fields", {}))}
            self._refuse(conn, "invalid", error)
            return HOSTILE
        except ApiError as exc:  # not JSON, or nested too deep
            self._refuse(conn, "malformed", {"code": "BAD_FRAME", "message": exc.message})
            return HOSTILE
        kind = raw.get("type") if isinstance(raw, dict) else None
        module = self.frames.get(kind) if isinstance(kind, str) else None
        if module is None:
            self._refuse(
                conn, "unknown_type", {"code": "UNKNOWN_TYPE", "type": kind if isinstance(kind, str) else None}
            )
            return HOSTILE
        if module.frame.needs_session and conn.session_id is None:
            self._refuse(conn, "no_session", {"code": "NO_SESSION", "type": kind})
            return ANSWERED
        assert self.loop is not None
        if conn.held is not None and conn.held[0] == kind:
            wait = conn.held[1] - self.loop.time()
            if wait > 0:
                # Told to wait and sent anyway: answered here, without a batch or a count in Valkey
                # (a flood of sends past MESSAGES_PER_MINUTE shared the honest senders' batches).
                error = {"code": "RATE_LIMITED", "message": conn.held[2], "type": kind}
                self._refuse(conn, "held", {**error, "retry_after_seconds": math.ceil(wait)})
                return JUNK
            conn.held = None
        try:
            body = module.schema.load(raw) if module.schema else {}
        except marshmallow.ValidationError as exc:
            self._refuse(conn, "invalid", {"code": "VALIDATION_ERROR", "type": kind, "fields": scrub(exc.messages)})
            return JUNK
        ctx = FrameCtx(self.services, conn.principal, conn.session_id, body, memo=conn.memo)
        try:
            if module.batched:
                reply = await self.batches[module.frame.type].run(ctx)
                if isinstance(reply, ApiError):
                    raise reply
                if reply is FAILED:
                    self.connections.enqueue(conn, server_frame("error", {"code": "INTERNAL_ERROR", "type": kind}))
                    return ANSWERED
            elif module.frame.blocking:
                reply = await self.blocking(module.module.handle, ctx)
            else:
                reply = module.module.handle(ctx)
        except ApiError as exc:
            details = scrub(exc.details)  # fields, retry_after_seconds
            if isinstance(exc, RateLimited):
                conn.held = (str(kind), self.loop.time() + exc.details["retry_after_seconds"], exc.message)
            self.connections.enqueue(
                conn, server_frame("error", {**details, "code": exc.code, "message": exc.message, "type": kind})
            )
            return ANSWERED
        except Exception:
            log.exception("frame %s failed", kind)
            self.connections.enqueue(conn, server_frame("error", {"code": "INTERNAL_ERROR", "type": kind}))
            return ANSWERED
        if reply is not None:
            self.connections.enqueue(conn, server_frame(reply["type"], reply["data"]))
        return ANSWERED

    # --- the registry ---------------------------------------------------------------------------

    def _register(self, conn: Connection) -> asyncio.Future[None]:
        """Add the socket; the future is done once its user's channel is confirmed subscribed."""
        self.connections.add(conn)
        assert self.loop is not None
        confirmed: asyncio.Future[None] = self.loop.create_future()
        self.delivery.listen(conn.user, lambda: self._threadsafe(_settle, confirmed))
        return confirmed

    def _unregister(self, conn: Connection) -> None:
        left = self.connections.remove(conn)
        if not self.stopping and not any(c.session_id == conn.session_id for c in left):
            self.spawn(self.presence.forget(self.presence.entry(conn)))
        if not left:
            if conn.principal.user_type == "mitra" and not self.stopping:
                self.spawn(self.presence.offline_unless_back(conn.principal.user_id, time.time()))
            self.delivery.unlisten(conn.user)

    def announce(self, entries: list[tuple[str, str]]) -> None:
        self.presence.announce(entries)

    def connection_count(self) -> int:
        return self.connections.count()


def _type_of(text: str | None) -> str | None:
    """The `type` of a frame, fit to echo, when it has a readable one."""
    if text is None:
        return None
    try:
        raw = parse_json(text)
    except ApiError:
        return _type_of_parsed(text)
    kind = raw.get("type") if isinstance(raw, dict) else None
    return kind if isinstance(kind, str) else None


def _type_of_parsed(text: str) -> str | None:
    """The `type` of a frame that is JSON but breaks a rule of lib/inputs.py: only through safe_name."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        return None
    kind = raw.get("type") if isinstance(raw, dict) else None
    return safe_name(kind) if isinstance(kind, str) else None


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
