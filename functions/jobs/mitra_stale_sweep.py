"""Set mitras offline whose last heartbeat is older than mitra_stale_after_seconds."""

from lib.jobs import Job, JobCtx
from lib.presence.state import sweep_stale

JOB = Job(every=lambda s: s.mitra_auto_offline_sweep_seconds)


def run(ctx: JobCtx) -> None:
    s = ctx.services
    sweep_stale(s.db, s.valkey, s.config)
