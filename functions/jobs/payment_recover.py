"""Find the invoices of payment requests whose create call got no answer from Xendit."""

from lib.jobs import Job, JobCtx

# Often: a customer is waiting for this invoice, and the check costs one indexed query when idle.
JOB = Job(every=lambda s: min(10, s.payment_sweep_seconds))


def run(ctx: JobCtx) -> None:
    ctx.services.payments.recover_invoices()
