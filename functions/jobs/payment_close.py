"""Close at Xendit the invoices of requests we gave up on (abandoned, expired, superseded, lapsed)."""

from lib.jobs import Job, JobCtx

# Often: until it is closed an abandoned invoice can still be paid. Idle, it is one indexed query.
JOB = Job(every=lambda s: min(10, s.payment_sweep_seconds))


def run(ctx: JobCtx) -> None:
    ctx.services.payments.close_invoices()
