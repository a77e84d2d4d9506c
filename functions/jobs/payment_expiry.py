"""Expire pending payment requests past their deadline (and orphans without an invoice)."""

from lib.jobs import Job, JobCtx
from lib.payments.sweeps import expire_overdue

JOB = Job(every=lambda s: s.payment_sweep_seconds)


def run(ctx: JobCtx) -> None:
    expire_overdue(ctx.services.db)
