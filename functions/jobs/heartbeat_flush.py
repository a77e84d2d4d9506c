"""Copy mitras' last heartbeats from Valkey to PostgreSQL in one batch."""

from lib.jobs import Job, JobCtx
from lib.presence.mirror import flush_heartbeats

JOB = Job(every=lambda s: s.heartbeat_flush_seconds)


def run(ctx: JobCtx) -> None:
    flush_heartbeats(ctx.services.db, ctx.services.valkey)
