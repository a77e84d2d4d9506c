"""From the bus to the sockets: one subscription to `user:<type>:<id>` per user with a socket here,
each event to the sockets it concerns, what lib tells the gateways to do with them (an event of
lib/chat/events.GATEWAY_ONLY, never forwarded), and what the bus tells every socket (a revoked
sign-in, a link to Valkey restored)."""

from __future__ import annotations

import json
from collections.abc import Callable

from lib.bus import Bus
from lib.chat.events import DROP_SESSION, GATEWAY_ONLY, user_channel
from lib.chat.events import frame as server_frame
from runtime.gateway.connections import NOT_PARTICIPANT, UNAUTHORIZED, Connection, Connections

CHATTER = frozenset({"message.new", "message.status", "typing"})  # events that leave a session as it was

Threadsafe = Callable[..., None]  # the gateway's `_threadsafe`: fn(*args) from a bus thread into the event loop


class Delivery:
    def __init__(self, bus: Bus, connections: Connections, threadsafe: Threadsafe) -> None:
        self._bus = bus
        self.connections = connections
        self._threadsafe = threadsafe
        self._handlers: dict[tuple[str, str], Callable[[str], None]] = {}
        self._linked_before = False

    def listen(self, user: tuple[str, str], confirmed: Callable[[], None]) -> None:
        """Subscribe to the user's channel unless it is already; `confirmed` is called (from the
        bus's thread, or at once) when Valkey has confirmed the subscription."""
        if user not in self._handlers:
            handler = self._bus_handler(user)
            self._handlers[user] = handler
            self._bus.subscribe(user_channel(*user), handler)
        self._bus.when_confirmed(user_channel(*user), confirmed)

    def unlisten(self, user: tuple[str, str]) -> None:
        """The user's last socket here closed."""
        handler = self._handlers.pop(user, None)
        if handler is not None:
            self._bus.unsubscribe(user_channel(*user), handler)

    def _bus_handler(self, user: tuple[str, str]) -> Callable[[str], None]:
        return lambda message: self._threadsafe(self.deliver, user, message)

    def deliver(self, user: tuple[str, str], text: str) -> None:
        """An event for `user` (from the bus): to each of their sockets it concerns. A general
        socket hears everything; a session socket its session's events and those of no session."""
        group = self.connections.of_user(user)
        if not group:
            return
        try:
            event = json.loads(text)
            data = event.get("data") or {}
            session_id = data.get("session_id")
            kind = event.get("type")
        except (ValueError, AttributeError):
            return
        if kind in GATEWAY_ONLY:  # for this gateway, never for an app
            self._act(group, kind, None if session_id is None else str(session_id))
            return
        for conn in group:
            if conn.session_id is None or session_id is None or conn.session_id == str(session_id):
                if session_id is not None and kind not in CHATTER:
                    conn.memo.forget()  # its status or its mitra may have changed
                self.connections.enqueue(conn, text)

    def _act(self, group: list[Connection], kind: str, session_id: str | None) -> None:
        """What lib tells the gateways to do with the user's sockets (lib/chat/events.GATEWAY_ONLY)."""
        if kind == DROP_SESSION and session_id is not None:
            for conn in group:
                if conn.session_id == session_id:
                    self.connections.close_soon(conn, NOT_PARTICIPANT, "no longer a participant")

    def revoked(self, session_ids: list[str]) -> None:
        """Logout, password change, deactivation: the sessions' sockets close with 4401."""
        for sid in session_ids:
            for conn in self.connections.of_auth_session(sid):
                self.connections.close_soon(conn, UNAUTHORIZED, "session ended")

    def relinked(self) -> None:
        """The bus subscription came back after a loss: events may have been missed, so every
        socket is told to re-sync (info, messages?after=)."""
        if not self._linked_before:
            self._linked_before = True  # the first connect is not a re-link
            return
        for conn in self.connections.all():
            conn.memo.forget()
            self.connections.enqueue(conn, server_frame("resync", {"reason": "realtime link restored"}))
