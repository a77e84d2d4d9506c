"""Fire every chat deadline that is due: search windows, fallback choices, extension decisions
and payments, session ends and closing graces (each row claimed FOR UPDATE SKIP LOCKED)."""

from lib.jobs import Job, JobCtx

# A quarter second between ticks keeps every deadline within 1 s of its time (ARCHITECTURE.md);
# an idle tick is six index lookups.
JOB = Job(every=lambda s: 0.25, every_replica=True)


def run(ctx: JobCtx) -> None:
    chat = ctx.services.chat
    chat.expire_searches()
    chat.expire_fallback_choices()
    chat.decide_due_extensions()
    chat.lapse_unpaid_extensions()
    chat.close_due()
    chat.complete_due()
