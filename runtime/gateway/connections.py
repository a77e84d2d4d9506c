"""The live sockets of one gateway process: who holds them (by user and by sign-in session; one
more than WS_SOCKETS_PER_USER closes the user's oldest), each one's bounded outgoing queue, and
closing them with the codes docs/realtime.md lists."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import falcon
from falcon.asgi import WebSocket

from lib import sockets
from lib.frames import SessionMemo
from lib.metrics import m
from lib.principal import Principal

log = logging.getLogger("runtime.gateway")  # one logger for the realtime process (DEPLOY.md)

QUEUE_LIMIT = 256

# Close codes (API.md for 4401/4403; the others are ours, documented in docs/realtime.md).
UNAUTHORIZED, NOT_PARTICIPANT, SLOW_CONSUMER, GOING_AWAY, TOO_BIG = 4401, 4403, 4008, 1001, 1009
TOO_MANY_SOCKETS = 4429  # the user opened one socket more than WS_SOCKETS_PER_USER here: the oldest goes
TRY_AGAIN = 1013  # the session could not be checked (the database is briefly away): reconnect shortly


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


class Connections:
    """The registry and the way out: `spawn` runs the background sends and closes."""

    def __init__(
        self, spawn: Callable[[Coroutine[Any, Any, Any]], None], *, sockets_per_user: int, queue_limit: int
    ) -> None:
        self._spawn = spawn
        self.sockets_per_user = sockets_per_user
        self.queue_limit = queue_limit
        self.by_user: dict[tuple[str, str], set[Connection]] = {}
        self.by_auth_session: dict[str, set[Connection]] = {}
        self._serials = itertools.count(1)

    # --- the registry -------------------------------------------------------------------------

    def add(self, conn: Connection) -> None:
        """Register the socket. A user keeps at most WS_SOCKETS_PER_USER sockets on this process:
        one more closes the oldest."""
        conn.serial = next(self._serials)
        group = self.by_user.setdefault(conn.user, set())
        live = sorted((c for c in group if not c.closing), key=lambda c: c.serial)
        for oldest in live[: max(0, len(live) + 1 - self.sockets_per_user)]:
            log.info("oldest socket of a %s closed: over %d sockets", conn.principal.user_type, self.sockets_per_user)
            self.close_soon(oldest, TOO_MANY_SOCKETS, "too many sockets")
        group.add(conn)
        m().sockets.labels(conn.principal.user_type).inc()
        self.by_auth_session.setdefault(conn.principal.session_id, set()).add(conn)

    def remove(self, conn: Connection) -> set[Connection]:
        """Forget the socket; returns its user's sockets still here (none: the user is gone)."""
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
        if not group:
            self.by_user.pop(conn.user, None)
        return group

    def of_user(self, user: tuple[str, str]) -> list[Connection]:
        return list(self.by_user.get(user, ()))

    def of_auth_session(self, session_id: str) -> list[Connection]:
        return list(self.by_auth_session.get(session_id, ()))

    def all(self) -> list[Connection]:
        return [c for group in self.by_user.values() for c in group]

    def has_user(self, user: tuple[str, str]) -> bool:
        return user in self.by_user

    def count(self) -> int:
        return sum(len(g) for g in self.by_user.values())

    # --- sending and closing ------------------------------------------------------------------

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
            self._spawn(self._drain(conn))

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
            self._spawn(_close_quietly(conn.ws, code))

    @staticmethod
    def _closing(conn: Connection, code: int) -> bool:
        if conn.closing:
            return False
        conn.closing = True
        conn.outbox.clear()
        m().socket_closes.labels(str(code)).inc()
        return True


async def close_unregistered(ws: WebSocket, code: int) -> None:
    """Close a socket that never made it into the registry (refused at auth, or while stopping)."""
    m().socket_closes.labels(str(code)).inc()
    await _close_quietly(ws, code)


async def _close_quietly(ws: WebSocket, code: int) -> None:
    try:
        await ws.close(code)
    except (falcon.WebSocketDisconnected, RuntimeError, OSError):
        pass
