"""Copy mitras' last heartbeats from Valkey to PostgreSQL in one batch."""

from lib.jobs import Job, JobCtx

JOB = Job(every=lambda s: s.heartbeat_flush_seconds)


def run(ctx: JobCtx) -> None:
    ctx.services.presence.flush_heartbeats()
