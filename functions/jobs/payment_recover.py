"""Find the invoices of payment requests whose create call got no answer from Xendit."""

from lib.jobs import Job, JobCtx
from lib.payments.sweeps import recover_invoices

# Often: a customer is waiting for this invoice, and the check costs one indexed query when idle.
JOB = Job(every=lambda s: min(10, s.payment_sweep_seconds))


def run(ctx: JobCtx) -> None:
    recover_invoices(ctx.services.db, ctx.services.payment_gateway)
