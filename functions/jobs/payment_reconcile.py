"""Ask Xendit about pending invoices whose callback may have been lost."""

from lib.jobs import Job, JobCtx
from lib.payments.sweeps import reconcile

JOB = Job(every=lambda s: s.payment_sweep_seconds)


def run(ctx: JobCtx) -> None:
    s = ctx.services
    reconcile(s.db, s.payment_gateway, s.payment_events)
