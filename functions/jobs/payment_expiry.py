"""Expire pending payment requests past their deadline (and orphans without an invoice)."""

from lib.jobs import Job, JobCtx

JOB = Job(every=lambda s: s.payment_sweep_seconds)


def run(ctx: JobCtx) -> None:
    ctx.services.payments.expire_overdue()
