"""The WebSocket gateway (API.md, WebSocket section): authenticates each socket, forwards the events
that lib/chat/events.py publishes on `user:<type>:<id>` to that user's live sockets, and runs the
client frames of functions/realtime/ on a bounded thread pool (lib is synchronous; one stack).

Per socket: one task reading its frames in order, and a bounded outgoing queue drained by a task
that exists only while there is something to send, so an idle socket costs no CPU. A socket whose
queue overflows (a reader that cannot keep up) is closed with 4008; the others never wait for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
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
from falcon.asgi import WebSocket
from marshmallow import EXCLUDE

from lib import sockets
from lib.auth.tokens import APP_AUDIENCE
from lib.chat.events import frame as server_frame
from lib.chat.events import user_channel
from lib.chat.sessions import for_participant
from lib.errors import ApiError
from lib.frames import MAX_FRAME_BYTES, Frame, FrameCtx
from lib.metrics import m
from lib.principal import Principal
from lib.services import Services
from lib.valkey import VALKEY_ERRORS, valkey_failed
from runtime.router import FUNCTIONS_DIR, DiscoveryError, load_module, module_files

log = logging.getLogger("runtime.gateway")

QUEUE_LIMIT = 256
BATCH_LIMIT = 64  # frames per batch of a batched frame type
FLIGHTS = 4  # at most this many batches of one frame type in flight at once, per process
STALL_SECONDS = 0.05  # ...and a second one only when the one in flight has taken this long

# Close codes (API.md for 4401/4403; the others are ours, documented in docs/realtime.md).
UNAUTHORIZED, NOT_PARTICIPANT, SLOW_CONSUMER, GOING_AWAY, TOO_BIG = 4401, 4403, 4008, 1001, 1009


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
        frame = getattr(module, "FRAME", None)
        handlers = [h for h in ("handle", "handle_batch") if callable(getattr(module, h, None))]
        if not isinstance(frame, Frame) or len(handlers) != 1:
            raise DiscoveryError(
                f"{path}: a frame module defines FRAME = Frame(...) and handle(ctx) or handle_batch(ctxs)"
            )
        if handlers == ["handle_batch"] and not frame.blocking:
            raise DiscoveryError(f"{path}: handle_batch is for blocking frames (it runs on the thread pool)")
        if not (module.__doc__ or "").strip():
            raise DiscoveryError(f"{path}: needs a one-line module docstring")
        if frame.type in found or frame.type == "auth":
            raise DiscoveryError(f"{path}: frame type {frame.type!r} is taken")
        schema = frame.schema(unknown=EXCLUDE) if frame.schema else None
        found[frame.type] = FrameModule(frame, module, schema)
    return found


FAILED = object()  # a batched frame's outcome when its batch broke (logged once for the batch)


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

    def __init__(self, gateway: Gateway, handle: Callable[[list[FrameCtx]], list[Any]]) -> None:
        self.gateway = gateway
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
                try:
                    outcomes = await self.gateway.blocking(self.handle, [ctx for ctx, _ in batch])
                except ApiError as exc:  # the whole batch was refused (the database is away): each frame says so
                    outcomes = [exc] * len(batch)
                except Exception:
                    log.exception("a batch of %d frames failed", len(batch))
                    outcomes = [FAILED] * len(batch)
                for (_, done), outcome in zip(batch, outcomes, strict=True):
                    if not done.done():
                        done.set_result(outcome)
        finally:
            self.flying -= 1


@dataclass(eq=False)
class Connection:
    ws: WebSocket
    principal: Principal
    session_id: str | None
    outbox: deque[str] = field(default_factory=deque)
    draining: bool = False
    closing: bool = False
    expiry: asyncio.TimerHandle | None = None

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
        self._presence_task: asyncio.Task[None] | None = None
        self._linked_before = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.batches = {kind: Batches(self, f.module.handle_batch) for kind, f in frames.items() if f.batched}

    # --- process lifecycle --------------------------------------------------------------------

    async def startup(self) -> None:
        self.loop = asyncio.get_running_loop()
        s = self.services
        s.revocations.on_revoked(lambda ids: self._threadsafe(self._revoked, ids))
        s.bus.on_reconnect(lambda: self._threadsafe(self._relinked))
        await self.blocking(s.revocations.start)
        self._presence_task = asyncio.create_task(self._announce_forever())

    async def shutdown(self) -> None:
        """SIGTERM: every socket is closed with 1001 so its app reconnects to another replica."""
        self.stopping = True
        conns = [c for group in self.by_user.values() for c in group]
        await asyncio.gather(*(self.close(c, GOING_AWAY, "server restarting") for c in conns), return_exceptions=True)
        if self._presence_task is not None:
            self._presence_task.cancel()
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
        if self.stopping:
            await ws.close(GOING_AWAY)
            return
        await ws.accept()
        conn = await self._authenticate(ws)
        if conn is None:
            return
        listening = self._register(conn)
        try:
            # Events published from now on must reach this socket, and pushes must know of it: auth.ok
            # waits for the socket's presence and (briefly: Valkey may be away, and then the app
            # re-syncs anyway) for Valkey to confirm the subscription.
            key, session_id = conn.presence
            await self._presence(sockets.announce, [(key, sockets.member(self.process_id, session_id))])
            await self.blocking(listening.wait, 1.0)
            self.enqueue(conn, server_frame("auth.ok", {**self._who(conn), "session_id": conn.session_id}))
            while True:
                try:
                    text = await ws.receive_text()
                except TypeError:  # a binary frame
                    self.enqueue(conn, server_frame("error", {"code": "TEXT_ONLY"}))
                    continue
                if len(text.encode()) > MAX_FRAME_BYTES:
                    await self.close(conn, TOO_BIG, "frame too large")
                    return
                await self._handle(conn, text)
        except falcon.WebSocketDisconnected:
            pass
        finally:
            self._unregister(conn)

    @staticmethod
    def _who(conn: Connection) -> dict[str, Any]:
        return {"user_type": conn.principal.user_type, "user_id": conn.principal.user_id}

    async def _authenticate(self, ws: WebSocket) -> Connection | None:
        """The first frame, within the auth timeout (10 s): {"type": "auth", "token", "session_id"?}."""
        try:
            first = json.loads(await asyncio.wait_for(ws.receive_text(), self.auth_timeout))
        except (TimeoutError, ValueError, TypeError, falcon.WebSocketDisconnected):
            await _close_quietly(ws, UNAUTHORIZED)
            return None
        if not isinstance(first, dict) or first.get("type") != "auth" or not isinstance(first.get("token"), str):
            await _close_quietly(ws, UNAUTHORIZED)
            return None
        session_id = first.get("session_id")
        try:
            principal = self.services.verified_tokens.verify(first["token"], APP_AUDIENCE)
            if self.services.revocations.is_revoked(principal.session_id):
                raise ApiError("revoked")
        except ApiError:
            await _close_quietly(ws, UNAUTHORIZED)
            return None
        if session_id is not None:
            try:
                session_id = str(uuid.UUID(str(session_id)))
                await self.blocking(for_participant, self.services.db, principal, session_id)
            except (ValueError, ApiError):
                await _close_quietly(ws, NOT_PARTICIPANT)
                return None
        conn = Connection(ws, principal, session_id)
        assert self.loop is not None
        delay = principal.expires_at - time.time()
        conn.expiry = self.loop.call_later(max(0.0, delay), self._expired, conn)
        return conn

    def _expired(self, conn: Connection) -> None:
        self.spawn(self.close(conn, UNAUTHORIZED, "token expired"))

    async def _handle(self, conn: Connection, text: str) -> None:
        try:
            raw = json.loads(text)
            kind = raw.get("type") if isinstance(raw, dict) else None
        except ValueError:
            self.enqueue(conn, server_frame("error", {"code": "BAD_FRAME", "message": "Not JSON"}))
            return
        module = self.frames.get(kind) if isinstance(kind, str) else None
        if module is None:
            self.enqueue(conn, server_frame("error", {"code": "UNKNOWN_TYPE", "type": kind}))
            return
        if module.frame.needs_session and conn.session_id is None:
            self.enqueue(conn, server_frame("error", {"code": "NO_SESSION", "type": kind}))
            return
        try:
            body = module.schema.load(raw) if module.schema else {}
        except marshmallow.ValidationError as exc:
            self.enqueue(
                conn, server_frame("error", {"code": "VALIDATION_ERROR", "type": kind, "fields": exc.messages})
            )
            return
        ctx = FrameCtx(self.services, conn.principal, conn.session_id, body)
        try:
            if module.batched:
                reply = await self.batches[module.frame.type].run(ctx)
                if isinstance(reply, ApiError):
                    raise reply
                if reply is FAILED:
                    self.enqueue(conn, server_frame("error", {"code": "INTERNAL_ERROR", "type": kind}))
                    return
            elif module.frame.blocking:
                reply = await self.blocking(module.module.handle, ctx)
            else:
                reply = module.module.handle(ctx)
        except ApiError as exc:
            self.enqueue(conn, server_frame("error", {"code": exc.code, "message": exc.message, "type": kind}))
            return
        except Exception:
            log.exception("frame %s failed", kind)
            self.enqueue(conn, server_frame("error", {"code": "INTERNAL_ERROR", "type": kind}))
            return
        if reply is not None:
            self.enqueue(conn, server_frame(reply["type"], reply["data"]))

    # --- sending ------------------------------------------------------------------------------

    def enqueue(self, conn: Connection, text: str) -> None:
        if conn.closing:
            return
        if len(conn.outbox) >= self.queue_limit:
            log.info("socket of %s dropped: %d frames not read", conn.principal.user_type, len(conn.outbox))
            self.spawn(self.close(conn, SLOW_CONSUMER, "too slow"))
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
        if conn.closing:
            return
        conn.closing = True
        conn.outbox.clear()
        await _close_quietly(conn.ws, code)

    # --- the registry, the bus and the presence ----------------------------------------------

    def _register(self, conn: Connection) -> threading.Event:
        """Add the socket; the event is set once its user's channel is confirmed subscribed."""
        group = self.by_user.setdefault(conn.user, set())
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
        if not any(c.session_id == conn.session_id for c in group):
            key, session_id = conn.presence
            self.spawn(self._presence(sockets.forget, key, sockets.member(self.process_id, session_id)))
        if not group:
            self.by_user.pop(conn.user, None)
            handler = self._bus_handlers.pop(conn.user, None)
            self._listening.pop(conn.user, None)
            if handler is not None:
                self.services.bus.unsubscribe(user_channel(*conn.user), handler)

    def _bus_handler(self, user: tuple[str, str]) -> Callable[[str], None]:
        return lambda message: self._threadsafe(self.deliver, user, message)

    async def _presence(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            await self.blocking(fn, self.services.valkey, *args)
        except VALKEY_ERRORS:
            valkey_failed("gateway")  # the next refresh puts it right; pushes meanwhile err on the side of sending

    async def _announce_forever(self) -> None:
        while True:
            await asyncio.sleep(sockets.REFRESH_SECONDS)
            entries = {
                (sockets.key(*user), sockets.member(self.process_id, c.session_id))
                for user, group in self.by_user.items()
                for c in group
            }
            await self._presence(sockets.announce, entries)

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
                self.enqueue(conn, text)
                if (
                    event.get("type") == "session.rerouted"
                    and conn.session_id
                    and "mitra" in data
                    and data["mitra"] is None
                ):
                    # The previous mitra of a rerouted session is no longer a participant.
                    self.spawn(self.close(conn, NOT_PARTICIPANT, "rerouted"))

    def _revoked(self, session_ids: list[str]) -> None:
        """Logout, password change, deactivation: the sessions' sockets close with 4401."""
        for sid in session_ids:
            for conn in list(self.by_auth_session.get(sid, ())):
                self.spawn(self.close(conn, UNAUTHORIZED, "session ended"))

    def _relinked(self) -> None:
        """The bus subscription came back after a loss: events may have been missed, so every
        socket is told to re-sync (info, messages?after=)."""
        if not self._linked_before:
            self._linked_before = True  # the first connect is not a re-link
            return
        for group in list(self.by_user.values()):
            for conn in list(group):
                self.enqueue(conn, server_frame("resync", {"reason": "realtime link restored"}))

    def connection_count(self) -> int:
        return sum(len(g) for g in self.by_user.values())


async def _close_quietly(ws: WebSocket, code: int) -> None:
    try:
        await ws.close(code)
    except (falcon.WebSocketDisconnected, RuntimeError, OSError):
        pass
