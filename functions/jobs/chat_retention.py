"""Delete the transcripts of sessions that ended more than CHAT_RETENTION_DAYS ago, in batches."""

from lib.jobs import Job, JobCtx
from lib.transcripts import purge_expired

JOB = Job(every=lambda s: 60.0)
BATCHES_PER_RUN = 20  # 20 x 50 sessions a minute: a backlog drains without one long transaction


def run(ctx: JobCtx) -> None:
    s = ctx.services
    for _ in range(BATCHES_PER_RUN):
        if purge_expired(s.db, s.settings.chat_retention_days) == 0:
            return
