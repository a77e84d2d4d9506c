"""Rebuild the Valkey presence mirror from PostgreSQL: at start, within seconds of Valkey losing it
(restart, flush, failover), and every PRESENCE_HEAL_SECONDS against drift."""

from lib.jobs import Job, JobCtx
from lib.valkey import VALKEY_ERRORS, valkey_failed

# Checked every few seconds (a cheap GET); the full rebuild happens when due or when the mirror is gone.
JOB = Job(every=lambda s: min(5, s.presence_heal_seconds), run_at_start=True)


def run(ctx: JobCtx) -> None:
    try:
        ctx.services.presence.heal()
    except VALKEY_ERRORS:
        valkey_failed("presence")
        ctx.log.warning("presence mirror not rebuilt: Valkey unavailable")
