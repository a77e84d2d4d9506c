"""The gateway's frame handlers: the modules of functions/realtime/, found and checked at start-up
like endpoints and jobs (runtime/router.check_module)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import marshmallow
from marshmallow import EXCLUDE

from lib.frames import Frame
from runtime.router import FUNCTIONS_DIR, DiscoveryError, check_module, load_module, module_files


@dataclass(frozen=True)
class FrameModule:
    frame: Frame
    module: ModuleType
    schema: marshmallow.Schema | None

    @property
    def batched(self) -> bool:
        return hasattr(self.module, "handle_batch")


def discover_frames(root: Path = FUNCTIONS_DIR) -> dict[str, FrameModule]:
    found: dict[str, FrameModule] = {}
    for dotted, path in module_files(root, top={"realtime"}):
        module = load_module(dotted, path)
        frame, handler = check_module(
            module, path, "FRAME", Frame, ("handle", "handle_batch"), "handle(ctx) or handle_batch(ctxs)"
        )
        if handler == "handle_batch" and not frame.blocking:
            raise DiscoveryError(f"{path}: handle_batch is for blocking frames (it runs on the thread pool)")
        if frame.type in found or frame.type == "auth":
            raise DiscoveryError(f"{path}: frame type {frame.type!r} is taken")
        schema = frame.schema(unknown=EXCLUDE) if frame.schema else None
        found[frame.type] = FrameModule(frame, module, schema)
    return found
