"""The WebSocket gateway (API.md, WebSocket section): authenticates each socket, forwards the events
that lib/chat/events.py publishes on `user:<type>:<id>` to that user's live sockets, and runs the
client frames of functions/realtime/ on a bounded thread pool (lib is synchronous; one stack).

Per socket: one task reading its frames in order, and a bounded outgoing queue drained by a task
that exists only while there is something to send, so an idle socket costs no CPU. A socket whose
queue overflows (a reader that cannot keep up) is closed with 4008; the others never wait for it.

Every client frame, the auth frame too, goes through lib/inputs.py (the rules REST bodies follow):
junk before auth closes with 4401, junk after auth is answered by an `error` frame, and nothing a
client sends closes a socket with 1011. Fair share: WS_SOCKETS_PER_USER sockets per user on a
process (one more closes the oldest with 4429), WS_FRAMES_PER_SECOND frames per socket (a token
bucket in memory; the excess is dropped with at most one RATE_LIMITED error frame a second), and
MESSAGES_PER_MINUTE per sender in lib/chat/messages.py, which REST shares.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import falcon
import marshmallow
import redis
from falcon.asgi import WebSocket
from marshmallow import EXCLUDE

from lib import sockets
from lib.auth.tokens import APP_AUDIENCE
from lib.chat.events import frame as server_frame
from lib.chat.events import user_channel
from lib.chat.sessions import for_participant
from lib.errors import ApiError, ValidationFailed
from lib.frames import MAX_FRAME_BYTES, Frame, FrameCtx, SessionMemo
from lib.inputs import parse_json, safe_name, scrub
from lib.metrics import m
from lib.presence import state as presence
from lib.principal import Principal
from lib.services import Services
from lib.valkey import VALKEY_ERRORS, valkey_failed
from runtime.router import FUNCTIONS_DIR, DiscoveryError, check_module, load_module, module_files

log = logging.getLogger("runtime.gateway")

QUEUE_LIMIT = 256
BATCH_LIMIT = 64  # frames per batch of a batched frame type
FLIGHTS = 4  # at most this many batches of one frame type in flight at once, per process
STALL_SECONDS = 0.05  # ...and a second one only when the one in flight has taken this long

# Close codes (API.md for 4401/4403; the others are ours, documented in docs/realtime.md).
UNAUTHORIZED, NOT_PARTICIPANT, SLOW_CONSUMER, GOING_AWAY, TOO_BIG = 4401, 4403, 4008, 1001, 1009
TOO_MANY_SOCKETS = 4429  # the user opened one socket more than WS_SOCKETS_PER_USER here: the oldest goes
TRY_AGAIN = 1013  # the session could not be checked (the database is briefly away): reconnect shortly

QUIET_SECONDS = 1.0  # a socket over its frame rate hears RATE_LIMITED at most once this long
# A junk frame (not JSON, an unknown type, binary, breaking its schema) costs its socket this many
# frames' time: the socket is not read for REFUSED_FRAME_COST / WS_FRAMES_PER_SECOND seconds (half a
# second by default). No app sends junk; a hostile socket sends it with every other frame, and it
# then costs a parse and an answer twice a second instead of at the full frame rate (make
# bench-realtime, docs/limits.md). Refusals of the moment (SESSION_PAUSED, RATE_LIMITED) cost nothing.
REFUSED_FRAME_COST = 10
CHATTER = frozenset({"message.new", "message.status", "typing"})  # events that leave a session as it was


@dataclass(frozen=True)
class FrameModule:
    frame: Frame
    module: ModuleType
    schema: marshmallow.Schema | None

    @property
    def batched(self) -> bool:
        return hasattr(self.module, "handle_batch")


def discover_frames(root: Path = FUNCTIONS_DIR) -> dict[str, FrameModule]:
    found: dict[str, FrameModule] = {}
    for dotted, path in module_files(root, top={"realtime"}):
        module = load_module(dotted, path)
        frame, handler = check_module(
            module, path, "FRAME", Frame, ("handle", "handle_batch"), "handle(ctx) or handle_batch(ctxs)"
        )
        if handler == "handle_batch" and not frame.blocking:
            raise DiscoveryError(f"{path}: handle_batch is for blocking frames (it runs on the thread pool)")
        if frame.type in found or frame.type == "auth":
            raise DiscoveryError(f"{path}: frame type {frame.type!r} is taken")
        schema = frame.schema(unknown=EXCLUDE) if frame.schema else None
        found[frame.type] = FrameModule(frame, module, schema)
    return found


FAILED = object()  # a batched frame's outcome when handling it failed (logged with the traceback)


class Batches:
    """The frames of one batched type (`handle_batch`), gathered while a batch is in flight. With
    nothing in flight a frame leaves at once, alone; under load the next batch takes everything
    that arrived meanwhile, so one thread hop, one statement and one publish carry many frames and
    the cost per frame falls as the load rises (group commit). Another batch starts beside the one
    in flight only when that one has taken STALL_SECONDS (a row lock, a slow statement), so one
    stuck batch does not hold every sender of the process. A socket still handles its own frames
    one after another, so its messages keep their order.

    Measured (1,000 pairs at 1 msg/s, alternating runs): one batch in flight p99 16.0 / 14.8 ms,
    up to two at once 28.0 / 17.6 ms, up to four at once 50.7 / 30.1 ms."""

    def __init__(self, gateway: Gateway, kind: str, handle: Callable[[list[FrameCtx]], list[Any]]) -> None:
        self.gateway = gateway
        self.kind = kind
        self.handle = handle
        self.waiting: list[tuple[FrameCtx, asyncio.Future[Any]]] = []
        self.flying = 0
        self.since = 0.0  # when the newest batch in flight left
        self.nudging = False

    async def run(self, ctx: FrameCtx) -> Any:
        """The frame's outcome: its reply, None, an ApiError, or FAILED."""
        loop = self.gateway.loop
        assert loop is not None
        done = loop.create_future()
        self.waiting.append((ctx, done))
        if not self._launch() and not self.nudging:  # if the batch in flight stalls, another takes these
            self.nudging = True
            loop.call_later(STALL_SECONDS, self._nudge)
        return await done

    def _launch(self) -> bool:
        """Start a flight for what is waiting, if none is flying or the newest has stalled."""
        assert self.gateway.loop is not None
        if self.waiting and (
            self.flying == 0 or (self.flying < FLIGHTS and self.gateway.loop.time() - self.since >= STALL_SECONDS)
        ):
            self.flying += 1
            self.since = self.gateway.loop.time()
            self.gateway.spawn(self._fly())
            return True
        return False

    def _nudge(self) -> None:
        self.nudging = False
        self._launch()

    async def _fly(self) -> None:
        assert self.gateway.loop is not None
        try:
            while self.waiting:
                batch, self.waiting = self.waiting[:BATCH_LIMIT], self.waiting[BATCH_LIMIT:]
                self.since = self.gateway.loop.time()
                outcomes: list[Any] = [FAILED] * len(batch)
                try:
                    outcomes = await self._outcomes([ctx for ctx, _ in batch])
                finally:  # every frame hears back, whatever happened
                    for (_, done), outcome in zip(batch, outcomes, strict=True):
                        if not done.done():
                            done.set_result(outcome)
        finally:
            self.flying -= 1

    async def _outcomes(self, ctxs: list[FrameCtx]) -> list[Any]:
        """One outcome per frame. A batch refused as a whole for a reason every frame shares (the
        database is away: a 5xx) answers each frame with it; any other failure of a batch of
        several frames is one frame's doing, so each frame is run again alone and fails alone."""
        try:
            outcomes = list(await self.gateway.blocking(self.handle, ctxs))
            if len(outcomes) == len(ctxs):
                return outcomes
            reason = f"{len(outcomes)} outcomes"
        except ApiError as exc:
            if exc.status >= 500 or len(ctxs) == 1:
                return [exc] * len(ctxs)
            reason = exc.code
        except Exception as exc:
            if len(ctxs) == 1:
                log.exception("a %s frame failed", self.kind)
                return [FAILED]
            reason = type(exc).__name__
        log.warning("a batch of %d %s frames failed (%s): each is run alone", len(ctxs), self.kind, reason)
        outcomes = await self.gateway.blocking(self._one_by_one, ctxs)
        return list(outcomes)

    def _one_by_one(self, ctxs: list[FrameCtx]) -> list[Any]:
        outcomes: list[Any] = []
        for ctx in ctxs:
            try:
                (outcome,) = self.handle([ctx])
            except ApiError as exc:
                outcome = exc
            except Exception:
                log.exception("a %s frame failed", self.kind)
                outcome = FAILED
            outcomes.append(outcome)
        return outcomes


@dataclass(eq=False)
class Connection:
    ws: WebSocket
    principal: Principal
    session_id: str | None
    outbox: deque[str] = field(default_factory=deque)
    draining: bool = False
    closing: bool = False
    expiry: asyncio.TimerHandle | None = None
    serial: int = 0  # registration order: a user's oldest socket is the first to go (TOO_MANY_SOCKETS)
    memo: SessionMemo = field(default_factory=SessionMemo)
    allowance: float = 0.0  # frames it may send now: a token bucket refilled at WS_FRAMES_PER_SECOND
    refilled: float = 0.0
    warned: float = -math.inf  # when it last heard RATE_LIMITED

    def wait(self, rate: float) -> float:
        """Seconds until the socket has a whole frame's allowance again."""
        return max(0.0, (1.0 - self.allowance) / rate)

    def admit(self, now: float, rate: float) -> bool:
        """Take one frame's token; False when the socket is over its rate (up to a second's worth
        may come at once)."""
        self.allowance = min(rate, self.allowance + (now - self.refilled) * rate)
        self.refilled = now
        if self.allowance < 1.0:
            return False
        self.allowance -= 1.0
        return True

    @property
    def user(self) -> tuple[str, str]:
        return self.principal.user_type, self.principal.user_id

    @property
    def presence(self) -> tuple[str, str | None]:
        return sockets.key(*self.user), self.session_id


class Gateway:
    def __init__(
        self, services: Services, frames: dict[str, FrameModule], *, pool_size: int = 16, queue_limit: int = QUEUE_LIMIT
    ) -> None:
        self.services = services
        self.frames = frames
        self.queue_limit = queue_limit
        self.auth_timeout = services.settings.realtime_auth_timeout_seconds
        self.pool = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="gateway")
        self.process_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.by_user: dict[tuple[str, str], set[Connection]] = {}
        self.by_auth_session: dict[str, set[Connection]] = {}
        self._bus_handlers: dict[tuple[str, str], Callable[[str], None]] = {}
        self._listening: dict[tuple[str, str], threading.Event] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping = False
        self._stopped: asyncio.Future[None] | None = None
        self._presence_task: asyncio.Task[None] | None = None
        self._linked_before = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.batches = {kind: Batches(self, kind, f.module.handle_batch) for kind, f in frames.items() if f.batched}
        self.sockets_per_user = services.settings.ws_sockets_per_user
        self.frames_per_second = float(services.settings.ws_frames_per_second)
        self._serials = itertools.count(1)

    # --- process lifecycle --------------------------------------------------------------------

    async def startup(self) -> None:
        self.loop = asyncio.get_running_loop()
        s = self.services
        s.revocations.on_revoked(lambda ids: self._threadsafe(self._revoked, ids))
        s.bus.on_reconnect(lambda: self._threadsafe(self._relinked))
        await self.blocking(s.revocations.start)
        self._presence_task = asyncio.create_task(self._announce_forever())

    async def shutdown(self) -> None:
        """SIGTERM: every socket is closed with 1001 so its app reconnects to another replica. The
        worker's signal handler and the ASGI lifespan both call this: the second waits for the first."""
        if self._stopped is None:
            self._stopped = asyncio.ensure_future(self._shutdown())
        await asyncio.shield(self._stopped)

    async def _shutdown(self) -> None:
        self.stopping = True
        conns = [c for group in self.by_user.values() for c in group]
        await asyncio.gather(*(self.close(c, GOING_AWAY, "server restarting") for c in conns), return_exceptions=True)
        if self._presence_task is not None:
            self._presence_task.cancel()
        # The sockets' presence goes in one round (not socket by socket as they unregister, which
        # would race the pool's shutdown), so pushes reach their users at once, not 30 s later.
        entries = sorted({(sockets.key(*c.user), sockets.member(self.process_id, c.session_id)) for c in conns})
        await self._presence(sockets.forget_many, entries)
        self.pool.shutdown(wait=False, cancel_futures=True)

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """A background task, held until done (the loop keeps only weak references)."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
            await self._close_unregistered(ws, GOING_AWAY)
            return
        conn = await self._authenticate(ws)
        if conn is None:
            return
        listening = self._register(conn)
        try:
            if self.services.revocations.is_revoked(conn.principal.session_id):
                # Revoked while this socket was being authenticated, before _revoked could see it.
                self.close_soon(conn, UNAUTHORIZED, "session ended")
            else:
                # Events published from now on must reach this socket, and pushes must know of it:
                # auth.ok waits for the socket's presence and (briefly: Valkey may be away, and then
                # the app re-syncs anyway) for Valkey to confirm the subscription.
                key, session_id = conn.presence
                await self._presence(sockets.announce, [(key, sockets.member(self.process_id, session_id))])
                await self.blocking(listening.wait, 1.0)
                self.enqueue(conn, server_frame("auth.ok", {**self._who(conn), "session_id": conn.session_id}))
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
                    junk = True
                elif len(text.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
                    self.close_soon(conn, TOO_BIG, "frame too large")
                    junk = False
                else:
                    junk = await self._handle(conn, text)
                if junk:
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
            await self._close_unregistered(ws, UNAUTHORIZED)
            return None

    async def _check_auth(self, ws: WebSocket) -> Connection | None:
        try:
            first = parse_json(await asyncio.wait_for(ws.receive_text(), self.auth_timeout))
        except (TimeoutError, ApiError, TypeError, falcon.WebSocketDisconnected):
            await self._close_unregistered(ws, UNAUTHORIZED)
            return None
        if not isinstance(first, dict) or first.get("type") != "auth" or not isinstance(first.get("token"), str):
            await self._close_unregistered(ws, UNAUTHORIZED)
            return None
        session_id = first.get("session_id")
        try:
            principal = self.services.verified_tokens.verify(first["token"], APP_AUDIENCE)
            if self.services.revocations.is_revoked(principal.session_id):
                raise ApiError("revoked")
        except ApiError:
            await self._close_unregistered(ws, UNAUTHORIZED)
            return None
        if session_id is not None:
            try:
                session_id = str(uuid.UUID(str(session_id)))
                await self.blocking(for_participant, self.services.db, principal, session_id)
            except ValueError:
                await self._close_unregistered(ws, NOT_PARTICIPANT)
                return None
            except ApiError as exc:  # not a participant (404), or the database is away (503)
                await self._close_unregistered(ws, TRY_AGAIN if exc.status >= 500 else NOT_PARTICIPANT)
                return None
        assert self.loop is not None
        now = self.loop.time()
        conn = Connection(ws, principal, session_id, allowance=self.frames_per_second, refilled=now)
        delay = principal.expires_at - time.time()
        conn.expiry = self.loop.call_later(max(0.0, delay), self._expired, conn)
        return conn

    def _expired(self, conn: Connection) -> None:
        self.close_soon(conn, UNAUTHORIZED, "token expired")

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
            self.enqueue(conn, server_frame("error", {**error, "retry_after_seconds": 1}))
        return False

    def _refuse(self, conn: Connection, reason: str, error: dict[str, Any]) -> None:
        """A frame refused before any handler: counted, and answered with an `error` frame."""
        m().frames_refused.labels(reason).inc()
        self.enqueue(conn, server_frame("error", error))

    async def _handle(self, conn: Connection, text: str) -> bool:
        """Handle one frame; True when it was junk (not JSON, an unknown type, breaking its schema):
        what no app sends, unlike a refusal of the moment (SESSION_PAUSED, RATE_LIMITED, NO_SESSION
        from an app acking on its general socket), which costs the socket nothing more."""
        try:
            raw = parse_json(text)  # the rules every REST body follows (lib/inputs.py)
        except ValidationFailed as exc:  # text PostgreSQL cannot store, a number beyond 64 bits
            error = {"code": exc.code, "type": _type_of_parsed(text), "fields": scrub(exc.details.get("fields", {}))}
            self._refuse(conn, "invalid", error)
            return True
        except ApiError as exc:  # not JSON, or nested too deep
            self._refuse(conn, "malformed", {"code": "BAD_FRAME", "message": exc.message})
            return True
        kind = raw.get("type") if isinstance(raw, dict) else None
        module = self.frames.get(kind) if isinstance(kind, str) else None
        if module is None:
            self._refuse(
                conn, "unknown_type", {"code": "UNKNOWN_TYPE", "type": kind if isinstance(kind, str) else None}
            )
            return True
        if module.frame.needs_session and conn.session_id is None:
            self._refuse(conn, "no_session", {"code": "NO_SESSION", "type": kind})
            return False
        try:
            body = module.schema.load(raw) if module.schema else {}
        except marshmallow.ValidationError as exc:
            self._refuse(conn, "invalid", {"code": "VALIDATION_ERROR", "type": kind, "fields": scrub(exc.messages)})
            return True
        ctx = FrameCtx(self.services, conn.principal, conn.session_id, body, memo=conn.memo)
        try:
            if module.batched:
                reply = await self.batches[module.frame.type].run(ctx)
                if isinstance(reply, ApiError):
                    raise reply
                if reply is FAILED:
                    self.enqueue(conn, server_frame("error", {"code": "INTERNAL_ERROR", "type": kind}))
                    return False
            elif module.frame.blocking:
                reply = await self.blocking(module.module.handle, ctx)
            else:
                reply = module.module.handle(ctx)
        except ApiError as exc:
            details = scrub(exc.details)  # fields, retry_after_seconds
            self.enqueue(
                conn, server_frame("error", {**details, "code": exc.code, "message": exc.message, "type": kind})
            )
            return False
        except Exception:
            log.exception("frame %s failed", kind)
            self.enqueue(conn, server_frame("error", {"code": "INTERNAL_ERROR", "type": kind}))
            return False
        if reply is not None:
            self.enqueue(conn, server_frame(reply["type"], reply["data"]))
        return False

    # --- sending ------------------------------------------------------------------------------

    def enqueue(self, conn: Connection, text: str) -> None:
        if conn.closing:
            return
        if len(conn.outbox) >= self.queue_limit:
            log.info("socket of %s dropped: %d frames not read", conn.principal.user_type, len(conn.outbox))
            self.close_soon(conn, SLOW_CONSUMER, "too slow")
            return
        conn.outbox.append(text)
        if not conn.draining:
            conn.draining = True
            self.spawn(self._drain(conn))

    async def _drain(self, conn: Connection) -> None:
        try:
            while conn.outbox and not conn.closing:
                await conn.ws.send_text(conn.outbox.popleft())
        except (falcon.WebSocketDisconnected, RuntimeError, OSError):
            conn.closing = True
        finally:
            conn.draining = False

    async def close(self, conn: Connection, code: int, reason: str = "") -> None:
        if self._closing(conn, code):
            await _close_quietly(conn.ws, code)

    def close_soon(self, conn: Connection, code: int, reason: str = "") -> None:
        """`close`, from code that cannot wait: the socket counts as closed at once."""
        if self._closing(conn, code):
            self.spawn(_close_quietly(conn.ws, code))

    @staticmethod
    def _closing(conn: Connection, code: int) -> bool:
        if conn.closing:
            return False
        conn.closing = True
        conn.outbox.clear()
        m().socket_closes.labels(str(code)).inc()
        return True

    @staticmethod
    async def _close_unregistered(ws: WebSocket, code: int) -> None:
        m().socket_closes.labels(str(code)).inc()
        await _close_quietly(ws, code)

    # --- the registry, the bus and the presence ----------------------------------------------

    def _register(self, conn: Connection) -> threading.Event:
        """Add the socket; the event is set once its user's channel is confirmed subscribed. A user
        keeps at most WS_SOCKETS_PER_USER sockets on this process: one more closes the oldest."""
        conn.serial = next(self._serials)
        group = self.by_user.setdefault(conn.user, set())
        live = sorted((c for c in group if not c.closing), key=lambda c: c.serial)
        for oldest in live[: max(0, len(live) + 1 - self.sockets_per_user)]:
            log.info("oldest socket of a %s closed: over %d sockets", conn.principal.user_type, self.sockets_per_user)
            self.close_soon(oldest, TOO_MANY_SOCKETS, "too many sockets")
        group.add(conn)
        m().sockets.labels(conn.principal.user_type).inc()
        self.by_auth_session.setdefault(conn.principal.session_id, set()).add(conn)
        if conn.user not in self._bus_handlers:
            handler = self._bus_handler(conn.user)
            self._bus_handlers[conn.user] = handler
            self._listening[conn.user] = self.services.bus.subscribe(user_channel(*conn.user), handler)
        return self._listening[conn.user]

    def _unregister(self, conn: Connection) -> None:
        conn.closing = True
        m().sockets.labels(conn.principal.user_type).dec()
        if conn.expiry is not None:
            conn.expiry.cancel()
        group = self.by_user.get(conn.user, set())
        group.discard(conn)
        auth = self.by_auth_session.get(conn.principal.session_id, set())
        auth.discard(conn)
        if not auth:
            self.by_auth_session.pop(conn.principal.session_id, None)
        if not self.stopping and not any(c.session_id == conn.session_id for c in group):
            key, session_id = conn.presence
            self.spawn(self._presence(sockets.forget, key, sockets.member(self.process_id, session_id)))
        if not group:
            if conn.principal.user_type == "mitra" and not self.stopping:
                self.spawn(self._offline_unless_back(conn.principal.user_id, time.time()))
            self.by_user.pop(conn.user, None)
            handler = self._bus_handlers.pop(conn.user, None)
            self._listening.pop(conn.user, None)
            if handler is not None:
                self.services.bus.unsubscribe(user_channel(*conn.user), handler)

    async def _offline_unless_back(self, mitra_id: str, closed_at: float) -> None:
        """A mitra's last socket here closed: after mitra_disconnect_grace_seconds (so a reconnect
        does not flap), offline unless it is back or alive meanwhile (docs/chat.md, "Presence").
        A stop skips it (the apps reconnect elsewhere); a process that dies meanwhile leaves it to
        the stale sweep."""
        s = self.services
        try:
            grace = await self.blocking(s.config.int, "mitra_disconnect_grace_seconds")
            if grace <= 0:
                return
            await asyncio.sleep(grace)
            if self.stopping or ("mitra", mitra_id) in self.by_user:
                return
            await self.blocking(presence.offline_when_gone, s.db, s.valkey, mitra_id, closed_at)
        except VALKEY_ERRORS:
            valkey_failed("gateway")  # unknown who is connected: the stale sweep decides
        except ApiError as exc:  # the database is briefly away: the same
            log.warning("a disconnected mitra's presence was not updated: %s", exc.code)

    def _bus_handler(self, user: tuple[str, str]) -> Callable[[str], None]:
        return lambda message: self._threadsafe(self.deliver, user, message)

    async def _presence(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            await self.blocking(fn, self.services.valkey, *args)
        except VALKEY_ERRORS:
            valkey_failed("gateway")  # the next refresh puts it right; pushes meanwhile err on the side of sending
        except (ValueError, TypeError) as exc:  # an entry Valkey's client cannot encode: served all the same
            log.warning("a socket's presence was not recorded: %s", type(exc).__name__)

    async def _announce_forever(self) -> None:
        while True:
            await asyncio.sleep(sockets.REFRESH_SECONDS)
            entries = sorted(
                {
                    (sockets.key(*user), sockets.member(self.process_id, c.session_id))
                    for user, group in self.by_user.items()
                    for c in group
                }
            )
            try:
                await self.blocking(self.announce, entries)
            except Exception:  # never the end of the refreshes: the next round tries again
                log.exception("presence refresh failed")

    def announce(self, entries: list[tuple[str, str]]) -> None:
        """The live sockets' presence, a chunk per command (lib/sockets.py). A chunk that fails for
        any reason but Valkey being away is announced again entry by entry, so a bad entry fails
        alone and the other sockets stay known (their users get no needless pushes)."""
        valkey = self.services.valkey
        away = (redis.ConnectionError, redis.TimeoutError, OSError)
        bad = (redis.RedisError, ValueError, TypeError)  # Valkey answered with an error, or could not be sent it
        try:
            for i in range(0, len(entries), sockets.CHUNK):
                chunk = entries[i : i + sockets.CHUNK]
                try:
                    sockets.announce(valkey, chunk)
                except away:
                    raise
                except bad as exc:
                    log.warning(
                        "presence of %d sockets refused (%s): each is tried alone", len(chunk), type(exc).__name__
                    )
                    for entry in chunk:
                        try:
                            sockets.announce(valkey, [entry])
                        except away:
                            raise
                        except bad as refused:
                            log.warning("a socket's presence was refused: %s", type(refused).__name__)
        except away:
            valkey_failed("gateway")  # the next round puts it right

    def deliver(self, user: tuple[str, str], text: str) -> None:
        """An event for `user` (from the bus): to each of their sockets it concerns. A general
        socket hears everything; a session socket its session's events and those of no session."""
        group = self.by_user.get(user)
        if not group:
            return
        try:
            event = json.loads(text)
            data = event.get("data") or {}
            session_id = data.get("session_id")
        except (ValueError, AttributeError):
            return
        for conn in list(group):
            if conn.session_id is None or session_id is None or conn.session_id == str(session_id):
                if session_id is not None and event.get("type") not in CHATTER:
                    conn.memo.forget()  # its status or its mitra may have changed
                self.enqueue(conn, text)
                if (
                    event.get("type") == "session.rerouted"
                    and conn.session_id
                    and "mitra" in data
                    and data["mitra"] is None
                ):
                    # The previous mitra of a rerouted session is no longer a participant.
                    self.close_soon(conn, NOT_PARTICIPANT, "rerouted")

    def _revoked(self, session_ids: list[str]) -> None:
        """Logout, password change, deactivation: the sessions' sockets close with 4401."""
        for sid in session_ids:
            for conn in list(self.by_auth_session.get(sid, ())):
                self.close_soon(conn, UNAUTHORIZED, "session ended")

    def _relinked(self) -> None:
        """The bus subscription came back after a loss: events may have been missed, so every
        socket is told to re-sync (info, messages?after=)."""
        if not self._linked_before:
            self._linked_before = True  # the first connect is not a re-link
            return
        for group in list(self.by_user.values()):
            for conn in list(group):
                conn.memo.forget()
                self.enqueue(conn, server_frame("resync", {"reason": "realtime link restored"}))

    def connection_count(self) -> int:
        return sum(len(g) for g in self.by_user.values())


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


async def _close_quietly(ws: WebSocket, code: int) -> None:
    try:
        await ws.close(code)
    except (falcon.WebSocketDisconnected, RuntimeError, OSError):
        pass
