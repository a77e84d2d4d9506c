"""Open the invoices of extensions approved by the timeout's default action."""

from lib.jobs import Job, JobCtx

# Its own job (and thread): a slow Xendit must never hold up the deadline ticks.
JOB = Job(every=lambda s: 1.0)


def run(ctx: JobCtx) -> None:
    chat = ctx.services.chat
    for extension_id in chat.unbilled_extensions():
        chat.issue_invoice(extension_id)
