"""Which users this gateway process holds sockets of, as pushes see it (lib/sockets.py: announced
on auth, refreshed every REFRESH_SECONDS, forgotten on close), and a mitra whose last socket closed
going offline after the grace."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

import redis

from lib import sockets
from lib.errors import ApiError
from lib.presence import state as presence
from lib.services import Services
from lib.valkey import VALKEY_ERRORS, valkey_failed
from runtime.gateway.connections import Connection, Connections

log = logging.getLogger("runtime.gateway")  # one logger for the realtime process (DEPLOY.md)

Blocking = Callable[..., Any]  # the gateway's `blocking`: fn and args on its thread pool, awaited


class Presence:
    def __init__(
        self,
        services: Services,
        connections: Connections,
        blocking: Blocking,
        process_id: str,
        stopping: Callable[[], bool],
    ) -> None:
        self.services = services
        self.connections = connections
        self._blocking = blocking
        self.process_id = process_id
        self._stopping = stopping

    def entry(self, conn: Connection) -> tuple[str, str]:
        """The socket's (key, member) in Valkey: one member per process and session."""
        key, session_id = conn.presence
        return key, sockets.member(self.process_id, session_id)

    def entries(self, conns: Iterable[Connection]) -> list[tuple[str, str]]:
        return sorted({self.entry(c) for c in conns})

    async def record(self, fn: Callable[..., None], *args: Any) -> None:
        """fn(valkey, *args) from lib/sockets.py; Valkey away or a bad entry costs no socket."""
        try:
            await self._blocking(fn, self.services.valkey, *args)
        except VALKEY_ERRORS:
            valkey_failed("gateway")  # the next refresh puts it right; pushes meanwhile err on the side of sending
        except (ValueError, TypeError) as exc:  # an entry Valkey's client cannot encode: served all the same
            log.warning("a socket's presence was not recorded: %s", type(exc).__name__)

    async def refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(sockets.REFRESH_SECONDS)
            try:
                await self._blocking(self.announce, self.entries(self.connections.all()))
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

    async def offline_unless_back(self, mitra_id: str, closed_at: float) -> None:
        """A mitra's last socket here closed: after mitra_disconnect_grace_seconds (so a reconnect
        does not flap), offline unless it is back or alive meanwhile (docs/chat.md, "Presence").
        A stop skips it (the apps reconnect elsewhere); a process that dies meanwhile leaves it to
        the stale sweep."""
        s = self.services
        try:
            grace = await self._blocking(s.config.int, "mitra_disconnect_grace_seconds")
            if grace <= 0:
                return
            await asyncio.sleep(grace)
            if self._stopping() or self.connections.has_user(("mitra", mitra_id)):
                return
            await self._blocking(presence.offline_when_gone, s.db, s.valkey, mitra_id, closed_at)
        except VALKEY_ERRORS:
            valkey_failed("gateway")  # unknown who is connected: the stale sweep decides
        except ApiError as exc:  # the database is briefly away: the same
            log.warning("a disconnected mitra's presence was not updated: %s", exc.code)
