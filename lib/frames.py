"""The WebSocket frame contract: one module per client frame type under functions/realtime/, like
endpoints and jobs. A module declares ``FRAME = Frame(type=..., schema=...)`` and
``handle(ctx) -> dict | None``: the reply frame's `{type, data}`, or None for no reply. A frame that
costs less in bulk defines ``handle_batch(ctxs) -> list[dict | None | ApiError]`` instead, one
outcome per frame in order: the gateway hands it the frames of that type that arrived while
earlier ones were being handled (runtime/gateway.py, `Batches`)."""

from __future__ import annotations

import builtins
import logging
from dataclasses import dataclass, field
from typing import Any

from marshmallow import Schema

from lib.principal import Principal
from lib.services import Services

MAX_FRAME_BYTES = 16 * 1024  # a client frame: a 4000-character message in JSON, with room to spare


@dataclass(frozen=True, kw_only=True)
class Frame:
    type: str
    schema: builtins.type[Schema] | None = None  # the frame's fields (flat, beside "type"); unknown ones ignored
    needs_session: bool = False  # only on a socket that joined a session
    blocking: bool = True  # does I/O: runs on the gateway's thread pool, not on its event loop


@dataclass(slots=True)
class FrameCtx:
    services: Services
    principal: Principal
    session_id: str | None
    body: dict[str, Any] = field(default_factory=dict)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("frames"))
