"""Keep-alive: answered by pong, without touching anything."""

from typing import Any

from lib.frames import Frame, FrameCtx

FRAME = Frame(type="ping", blocking=False)


def handle(ctx: FrameCtx) -> dict[str, Any]:
    return {"type": "pong", "data": {}}
