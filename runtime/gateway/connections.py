"""The live sockets of one gateway process: who holds them (by user and by sign-in session; one
more than WS_SOCKETS_PER_USER closes the user's oldest; more than WS_OPENS_PER_MINUTE opened in a
minute are refused), each one's bounded outgoing queue, and closing them with the codes
docs/realtime.md lists."""

from __future__ import annotations

import itertools
import logging
import math
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
POLICY = 1008  # the socket kept sending junk (JUNK_LIMIT frames within JUNK_WINDOW seconds)

# No app's code sends a frame that is not JSON, too deep, binary or holds text PostgreSQL cannot
# store; an app a version ahead of the server might send a type it does not know yet, now and then.
# A socket that sends JUNK_LIMIT such frames within JUNK_WINDOW seconds is hostile: it is closed, not
# answered on. (A frame breaking its schema, e.g. a message of spaces a user typed, is not counted.)
JUNK_LIMIT, JUNK_WINDOW = 10, 10.0
OPEN_WINDOW = 60.0  # WS_OPENS_PER_MINUTE counts the sockets a user opened in this many seconds


@dataclass(eq=False, slots=True)
class Connection:
    """One registered socket. Slots and lists, not a __dict__ and deques (760 bytes each, empty):
    an idle socket's record went from 1,777 to 321 bytes (10,000 of them under tracemalloc)."""

    ws: WebSocket
    principal: Principal
    session_id: str | None
    outbox: list[str] = field(default_factory=list)  # at most the queue limit; sent from the front
    draining: bool = False
    closing: bool = False
    serial: int = 0  # registration order: a user's oldest socket is the first to go (TOO_MANY_SOCKETS)
    memo: SessionMemo = field(default_factory=SessionMemo)
    allowance: float = 0.0  # frames it may send now: a token bucket refilled at WS_FRAMES_PER_SECOND
    refilled: float = 0.0
    warned: float = -math.inf  # when it last heard RATE_LIMITED
    junk: list[float] = field(default_factory=list)  # when its last JUNK_LIMIT junk frames came
    # (frame type, until, message): the socket was answered RATE_LIMITED for this type of frame, and
    # until then the gateway answers that type so itself (no batch, no count in Valkey).
    held: tuple[str, float, str] | None = None

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

    def junk_over(self, now: float) -> bool:
        """Count one junk frame; True when it is the JUNK_LIMIT-th within JUNK_WINDOW seconds."""
        self.junk.append(now)
        del self.junk[:-JUNK_LIMIT]
        return len(self.junk) == JUNK_LIMIT and now - self.junk[0] <= JUNK_WINDOW

    @property
    def user(self) -> tuple[str, str]:
        return self.principal.user_type, self.principal.user_id

    @property
    def presence(self) -> tuple[str, str | None]:
        return sockets.key(*self.user), self.session_id


class Connections:
    """The registry and the way out: `spawn` runs the background sends and closes."""

    def __init__(
        self,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        *,
        sockets_per_user: int,
        opens_per_minute: int,
        queue_limit: int,
    ) -> None:
        self._spawn = spawn
        self.sockets_per_user = sockets_per_user
        self.opens_per_minute = opens_per_minute
        self.queue_limit = queue_limit
        self.by_user: dict[tuple[str, str], set[Connection]] = {}
        self.by_auth_session: dict[str, set[Connection]] = {}
        self._serials = itertools.count(1)
        # When each user last opened sockets here (a list: every socket opened in the last minute has
        # one, and an empty deque alone is 760 bytes).
        self._opens: dict[tuple[str, str], list[float]] = {}
        self._barred: dict[tuple[str, str], float] = {}  # users closed 1008: no opens until then
        self._pruned = 0.0
        # The sockets by the second their token expires: one sweep a second closes them (a timer per
        # socket, with its copied context, was 590 bytes of every idle socket).
        self._expiring: dict[int, dict[Connection, None]] = {}  # (a dict: O(1) removal; by identity)

    def open_refused_for(self, user: tuple[str, str], now: float) -> float:
        """Count a socket the user opens; 0 when within WS_OPENS_PER_MINUTE, else the seconds until it
        would be. Per process, in memory: a gateway protects its own loop, and a refused open is not
        counted (a steady reconnect loop gets one socket per window, not none)."""
        if now - self._pruned >= OPEN_WINDOW:
            self._pruned = now
            self._opens = {u: t for u, t in self._opens.items() if now - t[-1] < OPEN_WINDOW}
            self._barred = {u: until for u, until in self._barred.items() if until > now}
        barred_until = self._barred.get(user, 0.0)
        if barred_until > now:
            return barred_until - now
        opened = self._opens.get(user)
        if opened is None:
            opened = self._opens[user] = []
        if len(opened) == self.opens_per_minute and now - opened[0] < OPEN_WINDOW:
            return OPEN_WINDOW - (now - opened[0])
        opened.append(now)
        del opened[: -self.opens_per_minute]  # the last WS_OPENS_PER_MINUTE opens are all it needs
        return 0.0

    def bar(self, user: tuple[str, str], now: float) -> None:
        """The user's socket was closed for junk (1008), here or on another process (the gateway
        tells every process over the bus): its opens on this process are refused for OPEN_WINDOW
        seconds, as past WS_OPENS_PER_MINUTE. An attacker reopens the moment it is
        closed, and each reopened socket cost a registration (for a session, a participant check
        in the database) and ten more junk frames answered before its next 1008."""
        self._barred[user] = now + OPEN_WINDOW

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
        self._expiring.setdefault(conn.principal.expires_at, {})[conn] = None

    def remove(self, conn: Connection) -> set[Connection]:
        """Forget the socket; returns its user's sockets still here (none: the user is gone)."""
        conn.closing = True
        m().sockets.labels(conn.principal.user_type).dec()
        expiring = self._expiring.get(conn.principal.expires_at)
        if expiring is not None:
            expiring.pop(conn, None)
            if not expiring:
                del self._expiring[conn.principal.expires_at]
        group = self.by_user.get(conn.user, set())
        group.discard(conn)
        auth = self.by_auth_session.get(conn.principal.session_id, set())
        auth.discard(conn)
        if not auth:
            self.by_auth_session.pop(conn.principal.session_id, None)
        if not group:
            self.by_user.pop(conn.user, None)
        return group

    def expired(self, now: float) -> list[Connection]:
        """The sockets whose token has expired by `now` (unix time), each returned once."""
        due = [second for second in self._expiring if second <= now]
        return [conn for second in due for conn in self._expiring.pop(second)]

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
                await conn.ws.send_text(conn.outbox.pop(0))
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
