"""The scheduled-job contract: one module per job under functions/jobs/, like endpoints."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from lib.config.env import Settings
from lib.services import Services


@dataclass(frozen=True, kw_only=True)
class Job:
    """What a job module declares as ``JOB``; ``run(ctx)`` does one tick."""

    every: Callable[[Settings], float]  # seconds between ticks, from deploy-fixed env settings
    run_at_start: bool = False  # also once when a worker starts (e.g. rebuilding a mirror)
    # Every replica runs every tick: for jobs that settle concurrency themselves, row by row with
    # FOR UPDATE SKIP LOCKED (the deadlines), so a second replica adds capacity instead of waiting.
    every_replica: bool = False


@dataclass(slots=True)
class JobCtx:
    services: Services
    log: logging.Logger
    now: Callable[[], datetime]
