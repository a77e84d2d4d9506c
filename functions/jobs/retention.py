"""Delete operational rows past their retention (webhook logs, ended refresh sessions, OTP requests,
security events) in small batches; log the counts in one line and export them as a metric."""

from __future__ import annotations

from collections.abc import Callable

from psycopg import sql

from lib.config.env import Settings
from lib.db import Database
from lib.errors import ApiError
from lib.jobs import Job, JobCtx
from lib.metrics import m

JOB = Job(every=lambda s: s.retention_sweep_seconds)
# Each batch is its own short transaction, so no lock is held for long and the rows' writers never
# wait; a backlog beyond BATCHES_PER_RUN x BATCH rows of a table drains over the next runs.
BATCH = 1000
BATCHES_PER_RUN = 100

# (rows the batch claimed, rows deleted by table): a batch that claims fewer than BATCH is the last.
Batch = tuple[int, dict[str, int]]

# A webhook log row outlives its age while it may still be needed: never processed (its outcome is
# unknown), money received but not credited (quarantined: no other record of it), or its payment
# request not settled (pending; confirmed and not yet used; paid without a chat and still open for a
# manual refund). Nothing references webhook_logs by key; payment_request_id is what links them.
_WEBHOOK_LOGS = """
DELETE FROM webhook_logs WHERE id IN (
    SELECT w.id FROM webhook_logs w
    WHERE w.received_at < now() - make_interval(days => %(days)s)
      AND w.processed_at IS NOT NULL
      AND w.outcome IS DISTINCT FROM 'quarantined_amount_mismatch'
      AND NOT EXISTS (SELECT 1 FROM payment_requests p
                      WHERE p.id = w.payment_request_id AND p.status IN ('pending', 'confirmed'))
      AND NOT EXISTS (SELECT 1 FROM pairing_failures f
                      WHERE f.payment_request_id = w.payment_request_id AND f.review_status = 'open')
    ORDER BY w.received_at
    LIMIT %(limit)s
    FOR UPDATE OF w SKIP LOCKED
)
"""

# Refresh tokens hang off their login session: a session revoked or expired longer ago than the
# retention goes with every generation of its tokens.
_ENDED_SESSIONS = """
SELECT id FROM auth_sessions
WHERE revoked_at < now() - make_interval(secs => %(keep)s) OR expires_at < now() - make_interval(secs => %(keep)s)
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""
# Never sooner than an access token of a revoked session can live: a process that starts learns the
# revoked sessions of that window from these rows (lib/auth/revocation.py), with some margin.
REVOCATION_MARGIN_SECONDS = 300

_BY_AGE = sql.SQL(
    "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE created_at < now() - make_interval(days => %(days)s) "
    "ORDER BY created_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
)


def _webhook_logs(db: Database, s: Settings) -> Batch:
    deleted = db.execute(_WEBHOOK_LOGS, {"days": s.webhook_log_retention_days, "limit": BATCH})
    return deleted, {"webhook_logs": deleted}


def _ended_sessions(db: Database, s: Settings) -> Batch:
    keep = max(s.refresh_token_retention_days * 86400, s.access_token_ttl_seconds + REVOCATION_MARGIN_SECONDS)
    with db.connection() as conn:
        ids = [r["id"] for r in conn.execute(_ENDED_SESSIONS, {"keep": keep, "limit": BATCH}).fetchall()]
        if not ids:
            return 0, {}
        tokens = conn.execute(
            "DELETE FROM auth_refresh_tokens WHERE session_id = ANY(%(session_ids)s)", {"session_ids": ids}
        )
        sessions = conn.execute("DELETE FROM auth_sessions WHERE id = ANY(%(session_ids)s)", {"session_ids": ids})
        return len(ids), {"refresh_tokens": tokens.rowcount, "auth_sessions": sessions.rowcount}


def _by_age(table: str, days: Callable[[Settings], int]) -> Callable[[Database, Settings], Batch]:
    statement = _BY_AGE.format(table=sql.Identifier(table))

    def batch(db: Database, s: Settings) -> Batch:
        deleted = db.execute(statement, {"days": days(s), "limit": BATCH})
        return deleted, {table: deleted}

    return batch


# (name in the log line, one batch); the metric's table labels are the keys each batch counts.
SWEEPS: tuple[tuple[str, Callable[[Database, Settings], Batch]], ...] = (
    ("webhook_logs", _webhook_logs),
    ("refresh_tokens", _ended_sessions),
    ("otp_requests", _by_age("otp_requests", lambda s: s.otp_request_retention_days)),
    ("security_events", _by_age("security_events", lambda s: s.security_event_retention_days)),
)
TABLES = ("webhook_logs", "refresh_tokens", "auth_sessions", "otp_requests", "security_events")


def run(ctx: JobCtx) -> None:
    s = ctx.services
    deleted = dict.fromkeys(TABLES, 0)
    backlog: list[str] = []
    failed: list[str] = []
    error: ApiError | None = None
    for name, batch in SWEEPS:  # one table failing (the database away) does not stop the others
        try:
            for _ in range(BATCHES_PER_RUN):
                claimed, counts = batch(s.db, s.settings)
                for table, n in counts.items():
                    deleted[table] += n
                if claimed < BATCH:
                    break
            else:
                backlog.append(name)
        except ApiError as exc:
            failed.append(name)
            error = error or exc
    metric = m().retention_deleted
    for table, n in deleted.items():
        metric.labels(table).inc(n)
    line = " ".join(f"{table}={n}" for table, n in deleted.items())
    if backlog:
        line += f" (more left: {','.join(backlog)})"
    if failed:
        line += f" (failed: {','.join(failed)})"
    ctx.log.info("retention deleted %s", line)
    if error is not None:
        raise error  # the worker counts the run as unavailable
