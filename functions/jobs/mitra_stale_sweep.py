"""Set mitras offline whose last heartbeat is older than mitra_stale_after_seconds."""

from lib.jobs import Job, JobCtx
from lib.presence import sweep_stale

JOB = Job(every=lambda s: s.mitra_auto_offline_sweep_seconds)


def run(ctx: JobCtx) -> None:
    sweep_stale(ctx.services)
