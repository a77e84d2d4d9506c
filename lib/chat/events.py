"""The one publisher of what the apps hear (API.md, WebSocket section). Callers persist first
(the row is committed), then publish here; each recipient has a Valkey channel
`user:<user_type>:<user_id>` that every realtime process holding a socket of theirs listens to.

A publish lost to a crash between commit and publish, or to Valkey being down, is not retried:
the apps re-sync after any reconnect with `GET /api/shared/chat/{id}/info` and
`GET /api/shared/chat/{id}/messages?after=` (docs/realtime.md).

Beside the events of docs/chat.md, lib tells the gateways what a change means for the sockets they
hold (GATEWAY_ONLY), on the same channel and in order with the rest, so the gateway keeps no
domain rule of its own; these reach no app and wake none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lib.bus import Bus
from lib.jsonenc import dumps
from lib.push import Notifier


@dataclass(frozen=True)
class Party:
    """A user who hears events."""

    user_type: str  # customer | mitra
    user_id: str

    @property
    def channel(self) -> str:
        return user_channel(self.user_type, self.user_id)


# The recipient is no longer a participant of `data.session_id` (a reroute took it away): the
# gateways close the recipient's sockets joined to that session with 4403.
DROP_SESSION = "gateway.drop_session"
GATEWAY_ONLY = frozenset({DROP_SESSION})


def user_channel(user_type: str, user_id: str) -> str:
    return f"user:{user_type}:{user_id}"


def customer(user_id: object) -> Party:
    return Party("customer", str(user_id))


def mitra(user_id: object) -> Party:
    return Party("mitra", str(user_id))


def frame(event_type: str, data: dict[str, Any]) -> str:
    """A server frame as the apps receive it: {"type", "data", "at"}."""
    return dumps({"type": event_type, "data": data, "at": datetime.now(UTC)}).decode()


class ChatEvents:
    """Publishes each event to its recipients' channels, and hands the ones an app must be woken
    for to the notifier, which pushes where no live socket carries them."""

    def __init__(self, bus: Bus, notifier: Notifier | None = None) -> None:
        self._bus = bus
        self._notifier = notifier

    def publish(self, to: Iterable[Party], event_type: str, data: dict[str, Any]) -> None:
        self.publish_each([(to, event_type, data)])

    def publish_each(self, events: Iterable[tuple[Iterable[Party], str, dict[str, Any]]]) -> None:
        """Many events (a deadline tick's worth) in one round trip."""
        messages = []
        for to, event_type, data in events:
            parties = list(dict.fromkeys(to))
            text = frame(event_type, data)
            messages += [(party.channel, text) for party in parties]
            if self._notifier is not None and event_type not in GATEWAY_ONLY:
                self._notifier.notify([(p.user_type, p.user_id) for p in parties], event_type, data)
        self._bus.publish_many(messages)
