"""Open the invoices of extensions approved by the timeout's default action."""

from lib.chat.extensions import issue_invoice, unbilled
from lib.jobs import Job, JobCtx

# Its own job (and thread): a slow Xendit must never hold up the deadline ticks.
JOB = Job(every=lambda s: 1.0)


def run(ctx: JobCtx) -> None:
    s = ctx.services
    for extension_id in unbilled(s.db):
        issue_invoice(s.db, s.valkey, s.config, s.chat_events, s.payment_gateway, extension_id)
