"""Sample what only the database and Valkey know into gauges: payment requests of the last 24 hours
by status, and whether Valkey answers (every replica; dashboards take the max)."""

from lib.jobs import Job, JobCtx
from lib.metrics import m
from lib.valkey import is_up

PAYMENT_STATUSES = ("pending", "confirmed", "consumed", "expired", "abandoned", "failed_pairing")  # the CHECK in 0007
# 15 s: as often as Prometheus scrapes by default; one index range scan over a day of payments.
JOB = Job(every=lambda s: 15, every_replica=True, run_at_start=True)


def run(ctx: JobCtx) -> None:
    metrics = m()
    metrics.valkey_up.set(1 if is_up(ctx.services.valkey) else 0)
    rows = ctx.services.db.fetch_all(
        "SELECT status, count(*) AS n FROM payment_requests WHERE created_at > now() - interval '1 day' GROUP BY status"
    )
    counts = {r["status"]: int(r["n"]) for r in rows}
    for status in sorted(set(PAYMENT_STATUSES) | set(counts)):
        metrics.payments.labels(status).set(counts.get(status, 0))
