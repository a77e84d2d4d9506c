"""Which users this gateway process holds sockets of, as pushes see it (lib/sockets.py: announced
on auth, refreshed every REFRESH_SECONDS, forgotten on close), and a mitra whose last socket closed
going offline after the grace. The announce, the forget and the going offline are group commits
(batching.py): sockets that open or close together (a network blip, a flood closed at once, a
replica's apps reconnecting here) cost a few round trips, not a pool job each, so the message
stores of the other sockets do not queue behind them."""

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
from runtime.gateway.batching import Batches, Runner
from runtime.gateway.connections import Connection, Connections

log = logging.getLogger("runtime.gateway")  # one logger for the realtime process (DEPLOY.md)

Entry = tuple[str, str]  # a socket's (key, member) in Valkey
_AWAY = (redis.ConnectionError, redis.TimeoutError, OSError)  # Valkey away, not one entry refused


class Presence:
    def __init__(
        self,
        services: Services,
        connections: Connections,
        runner: Runner,
        process_id: str,
        stopping: Callable[[], bool],
    ) -> None:
        self.services = services
        self.connections = connections
        self._blocking = runner.blocking
        self.process_id = process_id
        self._stopping = stopping
        self._joined = Batches(runner, "presence announce", self._announce_all)
        self._forgotten = Batches(runner, "presence forget", self._forget_all)
        self._gone = Batches(runner, "mitra offline", self._offline_all)
        # Entries with a forget on its way, and those of them whose session opened a socket here
        # again since: that forget must not remove the new socket's member (announce and forget
        # are separate batches, so a late forget could land after the announce).
        self._forgetting: dict[Entry, int] = {}
        self._rejoined: set[Entry] = set()

    def entry(self, conn: Connection) -> tuple[str, str]:
        """The socket's (key, member) in Valkey: one member per process and session."""
        key, session_id = conn.presence
        return key, sockets.member(self.process_id, session_id)

    def entries(self, conns: Iterable[Connection]) -> list[tuple[str, str]]:
        return sorted({self.entry(c) for c in conns})

    async def joined(self, conn: Connection) -> None:
        """The socket's presence, announced (with the others that opened meanwhile)."""
        entry = self.entry(conn)
        if entry in self._forgetting:
            self._rejoined.add(entry)
        await self._joined.run(entry)

    async def forget(self, entry: Entry) -> None:
        """A closed socket's presence (`entry`, not the socket: it is freed at once, not kept
        until its batch is done), forgotten with the others that closed meanwhile."""
        self._rejoined.discard(entry)
        self._forgetting[entry] = self._forgetting.get(entry, 0) + 1
        try:
            await self._forgotten.run(entry)
        finally:
            if self._forgetting[entry] == 1:
                del self._forgetting[entry]
                self._rejoined.discard(entry)
            else:
                self._forgetting[entry] -= 1

    def unforgotten(self) -> list[Entry]:
        """The forgets not yet sent (a stopping process sends them with its own sockets')."""
        return [e for e in self._forgotten.drain() if e not in self._rejoined]

    def _announce_all(self, entries: list[Entry]) -> list[None]:
        self.announce(entries)  # never raises: Valkey away or a bad entry costs no socket
        return [None] * len(entries)

    def _forget_all(self, entries: list[Entry]) -> list[None]:
        rejoined = self._rejoined  # read here, on the pool's thread: a set's membership test is atomic
        try:
            sockets.forget_many(self.services.valkey, [e for e in entries if e not in rejoined])
        except _AWAY:
            valkey_failed("gateway")  # its members lapse within TTL_SECONDS
        return [None] * len(entries)  # any other error: Batches tries each entry alone

    def _offline_all(self, gone: list[tuple[str, float]]) -> list[bool]:
        s = self.services
        try:
            off = presence.offline_when_gone(s.db, s.valkey, gone)
        except _AWAY:
            valkey_failed("gateway")  # unknown who is connected: the stale sweep decides
            return [False] * len(gone)
        # Any other error (one mitra's key of the wrong type in Valkey): Batches tries each alone.
        return [mitra_id in off for mitra_id, _ in gone]

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
        bad = (redis.RedisError, ValueError, TypeError)  # Valkey answered with an error, or could not be sent it
        try:
            for i in range(0, len(entries), sockets.CHUNK):
                chunk = entries[i : i + sockets.CHUNK]
                try:
                    sockets.announce(valkey, chunk)
                except _AWAY:
                    raise
                except bad as exc:
                    log.warning(
                        "presence of %d sockets refused (%s): each is tried alone", len(chunk), type(exc).__name__
                    )
                    for entry in chunk:
                        try:
                            sockets.announce(valkey, [entry])
                        except _AWAY:
                            raise
                        except bad as refused:
                            log.warning("a socket's presence was refused: %s", type(refused).__name__)
        except _AWAY:
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
            outcome = await self._gone.run((mitra_id, closed_at))
        except VALKEY_ERRORS:
            valkey_failed("gateway")  # unknown who is connected: the stale sweep decides
            return
        if isinstance(outcome, ApiError):  # the database is briefly away: the same
            log.warning("a disconnected mitra's presence was not updated: %s", outcome.code)
