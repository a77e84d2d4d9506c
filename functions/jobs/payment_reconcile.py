"""Poll Xendit for invoices that may still be paid (pending, abandoned, expired) whose callback may
have been lost; a paid one is settled exactly as its callback would have been."""

from lib.jobs import Job, JobCtx

JOB = Job(every=lambda s: s.payment_sweep_seconds)


def run(ctx: JobCtx) -> None:
    ctx.services.payments.reconcile()
