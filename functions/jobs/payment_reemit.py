"""Re-emit the confirmation event for paid requests that no session has consumed yet."""

from lib.jobs import Job, JobCtx
from lib.payments.sweeps import reemit_unpaired

JOB = Job(every=lambda s: s.payment_sweep_seconds)


def run(ctx: JobCtx) -> None:
    reemit_unpaired(ctx.services.db, ctx.services.payment_events)
