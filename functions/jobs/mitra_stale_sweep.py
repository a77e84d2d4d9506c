"""Set mitras offline whose last heartbeat is older than mitra_stale_after_seconds."""

from lib.jobs import Job, JobCtx

JOB = Job(every=lambda s: s.mitra_auto_offline_sweep_seconds)


def run(ctx: JobCtx) -> None:
    ctx.services.presence.sweep_stale()
