"""The WebSocket frame contract: one module per client frame type under functions/realtime/, like
endpoints and jobs. A module declares ``FRAME = Frame(type=..., schema=...)`` and
``handle(ctx) -> dict | None``: the reply frame's `{type, data}`, or None for no reply. A frame that
costs less in bulk defines ``handle_batch(ctxs) -> list[dict | None | ApiError]`` instead, one
outcome per frame in order: the gateway hands it the frames of that type that arrived while
earlier ones were being handled (runtime/gateway/batching.py, `Batches`)."""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from marshmallow import Schema

from lib.principal import Principal
from lib.services import Services

MAX_FRAME_BYTES = 16 * 1024  # a client frame: a 4000-character message in JSON, with room to spare
MEMO_SECONDS = 3.0  # how long a socket trusts its last read of its session (SessionMemo)
TYPING_RELAY_SECONDS = 1.0  # a socket's `typing` reaches the other party at most once this long


@dataclass(frozen=True, kw_only=True)
class Frame:
    type: str
    schema: builtins.type[Schema] | None = None  # the frame's fields (flat, beside "type"); unknown ones ignored
    needs_session: bool = False  # only on a socket that joined a session
    blocking: bool = True  # does I/O: runs on the gateway's thread pool, not on its event loop


@dataclass(slots=True)
class SessionMemo:
    """A socket's last read of the chat session it joined, for frames that only need who takes part
    and the status (`typing`, which an app sends many times a minute): kept MEMO_SECONDS, and
    dropped at once when an event about the session reaches the socket (a reroute changes the
    mitra, a transition the status). A read that raced such an event is not kept."""

    row: dict[str, Any] | None = None
    until: float = 0.0
    generation: int = 0
    typing_relayed: float = -TYPING_RELAY_SECONDS

    def typing_due(self) -> bool:
        """Whether a `typing` frame now is relayed: apps show the indicator for seconds after the
        last one, so one a second says all a storm of them would, at a publish and a delivery less
        per frame."""
        now = time.monotonic()
        if now - self.typing_relayed < TYPING_RELAY_SECONDS:
            return False
        self.typing_relayed = now
        return True

    def get(self, load: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        now = time.monotonic()
        row = self.row
        if row is not None and now < self.until:
            return row
        generation = self.generation
        row = load()
        if generation == self.generation:
            self.row, self.until = row, now + MEMO_SECONDS
        return row

    def forget(self) -> None:
        self.generation += 1
        self.row = None
        self.typing_relayed = -TYPING_RELAY_SECONDS  # a new mitra (a reroute) hears the next one


@dataclass(slots=True)
class FrameCtx:
    services: Services
    principal: Principal
    session_id: str | None
    body: dict[str, Any] = field(default_factory=dict)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("frames"))
    memo: SessionMemo = field(default_factory=SessionMemo)  # the socket's own; a fresh one remembers nothing
