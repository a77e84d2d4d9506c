"""Re-emit the confirmation event for paid requests that no session has consumed yet."""

from lib.jobs import Job, JobCtx

JOB = Job(every=lambda s: s.payment_sweep_seconds)


def run(ctx: JobCtx) -> None:
    ctx.services.payments.reemit_unpaired()
