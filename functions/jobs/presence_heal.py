"""Rebuild the Valkey presence mirror from PostgreSQL (at start, then periodically against drift)."""

from lib.jobs import Job, JobCtx
from lib.presence import reseed
from lib.valkey import VALKEY_ERRORS

JOB = Job(every=lambda s: s.presence_heal_seconds, run_at_start=True)


def run(ctx: JobCtx) -> None:
    try:
        reseed(ctx.services)
    except VALKEY_ERRORS:
        ctx.log.warning("presence mirror not rebuilt: Valkey unavailable")
