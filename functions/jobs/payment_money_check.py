"""Sample the reconciliation's proof into gauges: paid invoices in no place or in two, and the
refunds due with the age of the oldest (every replica; the alerts take the max)."""

from lib.jobs import Job, JobCtx
from lib.payments.reconciliation import sample

JOB = Job(every=lambda s: s.payment_sweep_seconds, every_replica=True, run_at_start=True)


def run(ctx: JobCtx) -> None:
    result = sample(ctx.services.db)
    if not result.ok:
        ctx.log.error("[ALERT] money-check: %d paid invoice(s) not accounted for exactly once", len(result.problems))
