"""runtime/gateway/delivery.py: which of a user's sockets an event reaches, and the gateway acting on
what lib tells it (lib/chat/events.GATEWAY_ONLY) instead of reading a rule into the public events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any

from lib.chat import events as ev
from lib.principal import Principal
from lib.services import Services
from runtime.gateway import Connection, Connections, Delivery

MITRA = ("mitra", "00000000-0000-0000-0000-00000000000a")
SESSION, OTHER = "00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"


class Socket:
    """The two calls Connections makes on a falcon WebSocket, recorded."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: int | None = None

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def close(self, code: int) -> None:
        self.closed = code


def _deliver(services: Services, texts: list[str]) -> dict[str | None, Socket]:
    """The texts from the bus to MITRA's three sockets: general, joined to SESSION, joined to OTHER."""
    sockets = {None: Socket(), SESSION: Socket(), OTHER: Socket()}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[Any]] = set()

        def spawn(work: Coroutine[Any, Any, Any]) -> None:
            tasks.add(loop.create_task(work))

        connections = Connections(spawn, sockets_per_user=8, opens_per_minute=30, queue_limit=16)
        delivery = Delivery(services.bus, connections, lambda fn, *args: fn(*args))
        for session_id, ws in sockets.items():
            connections.add(Connection(ws, Principal(*MITRA, "sign-in"), session_id))  # type: ignore[arg-type]
        for text in texts:
            delivery.deliver(MITRA, text)
        while tasks:
            done, _ = await asyncio.wait(tasks)
            tasks.difference_update(done)

    asyncio.run(main())
    return sockets


def test_the_public_rerouted_event_closes_no_socket(services: Services) -> None:
    """The old mitra's `session.rerouted {session_id, mitra: null}` is only news: the gateway keeps
    no rule that reads it as "close" (lib says so with its own event, below)."""
    rerouted = ev.frame("session.rerouted", {"session_id": SESSION, "mitra": None})
    sockets = _deliver(services, [rerouted])
    assert [s.closed for s in sockets.values()] == [None, None, None]
    assert [f["type"] for f in sockets[None].sent] == ["session.rerouted"]
    assert [f["type"] for f in sockets[SESSION].sent] == ["session.rerouted"]
    assert sockets[OTHER].sent == []


def test_drop_session_closes_the_sockets_joined_to_it_with_4403_and_reaches_no_app(services: Services) -> None:
    """What lib/chat/lifecycle.reroute publishes to the previous mitra, in its order: the socket
    joined to the session closes with 4403 and hears nothing more of it; the general socket hears
    the public event exactly as docs/chat.md has it; the gateway's own event reaches no socket."""
    texts = [
        ev.frame(ev.DROP_SESSION, {"session_id": SESSION}),
        ev.frame("session.rerouted", {"session_id": SESSION, "mitra": None}),
    ]
    sockets = _deliver(services, texts)
    assert sockets[SESSION].closed == 4403
    assert sockets[SESSION].sent == []
    assert sockets[None].closed is None
    assert [(f["type"], f["data"]) for f in sockets[None].sent] == [
        ("session.rerouted", {"session_id": SESSION, "mitra": None})
    ]
    assert sockets[OTHER].closed is None
    assert sockets[OTHER].sent == []
