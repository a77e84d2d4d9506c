"""Fire every chat deadline that is due: search windows, fallback choices, extension decisions
and payments, session ends and closing graces (each row claimed FOR UPDATE SKIP LOCKED)."""

from lib.chat.extensions import decide_due, lapse_unpaid
from lib.chat.lifecycle import close_due, complete_due
from lib.chat.pairing import expire_fallback_choices, expire_searches
from lib.jobs import Job, JobCtx

# A quarter second between ticks keeps every deadline within 1 s of its time (ARCHITECTURE.md);
# an idle tick is six index lookups.
JOB = Job(every=lambda s: 0.25, every_replica=True)


def run(ctx: JobCtx) -> None:
    s = ctx.services
    expire_searches(s.db, s.valkey, s.chat_events)
    expire_fallback_choices(s.db, s.valkey, s.chat_events)
    decide_due(s.db, s.valkey, s.config, s.chat_events)
    lapse_unpaid(s.db, s.valkey, s.config, s.chat_events)
    close_due(s.db, s.valkey, s.chat_events)
    complete_due(s.db, s.valkey, s.chat_events)
