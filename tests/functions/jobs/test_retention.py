"""The retention job: old operational rows go in bounded batches, rows still needed stay, the counts
are logged in one line and exported as a metric."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from functions.jobs import retention
from lib import metrics as prom
from lib.clock import utcnow
from lib.config.env import Settings
from lib.jobs import JobCtx
from lib.services import Services
from runtime.container import build_services
from runtime.worker import discover_jobs

TABLES = ("webhook_logs", "refresh_tokens", "auth_sessions", "otp_requests", "security_events")


def _run(services: Services) -> None:
    job = next(j for j in discover_jobs() if j.name == "retention")
    assert job.job.every(services.settings) == services.settings.retention_sweep_seconds
    job.module.run(JobCtx(services, logging.getLogger("jobs.retention"), utcnow))


def _deleted_so_far() -> dict[str, float]:
    found = dict.fromkeys(TABLES, 0.0)
    for family in text_string_to_metric_families(prom.exposition().decode()):
        for sample in family.samples:
            if sample.name == "halobestie_retention_deleted_rows_total":
                found[sample.labels["table"]] = sample.value
    return found


def _payment(services: Services, status: str, open_failure: bool | None = None) -> str:
    """A payment request of its own customer, in `status`; with a pairing failure when asked."""
    row = services.db.fetch_one(
        "WITH c AS (INSERT INTO customers (display_name) VALUES ('Lama') RETURNING id) "
        "INSERT INTO payment_requests (customer_id, mode, tier_id, minutes, price, amount, status, expires_at) "
        "SELECT c.id, 'chat', t.id, t.minutes, t.price, t.price, %(s)s, now() - interval '99 days' "
        "FROM c, pricing_tiers t WHERE t.mode = 'chat' AND t.minutes = 15 RETURNING id, customer_id",
        {"s": status},
    )
    assert row is not None
    if open_failure is not None:
        services.db.execute(
            "INSERT INTO pairing_failures (payment_request_id, customer_id, cause, review_status) "
            "VALUES (%(p)s, %(c)s, 'blast_timeout', %(r)s)",
            {"p": row["id"], "c": row["customer_id"], "r": "open" if open_failure else "refunded"},
        )
    return str(row["id"])


def _webhook_log(
    services: Services, label: str, days_old: int, *, request: str | None = None, outcome: str | None = "confirmed"
) -> None:
    services.db.execute(
        "INSERT INTO webhook_logs (external_id, raw_body, outcome, payment_request_id, received_at, processed_at) "
        "VALUES (%(l)s, '\\x7b7d', %(o)s, %(r)s, now() - make_interval(days => %(d)s), "
        "CASE WHEN %(o)s::text IS NULL THEN NULL ELSE now() - make_interval(days => %(d)s) END)",
        {"l": label, "o": outcome, "r": request, "d": days_old},
    )


def _session(services: Services, label: str, tokens: int, *, revoked: str | None, expires: str) -> None:
    """An auth session with `tokens` generations; `revoked` and `expires` are intervals from now."""
    row = services.db.fetch_one(
        "INSERT INTO auth_sessions (user_type, user_id, expires_at, revoked_at, revoked_reason) "
        "VALUES ('customer', gen_random_uuid(), now() + %(e)s::interval, now() + %(r)s::interval, %(l)s) "
        "RETURNING id",
        {"e": expires, "r": revoked, "l": label},
    )
    assert row is not None
    for generation in range(tokens):
        services.db.execute(
            "INSERT INTO auth_refresh_tokens (selector, session_id, generation, token_hash) "
            "VALUES (%(sel)s, %(s)s, %(g)s, 'hash')",
            {"sel": f"{label}-{generation}", "s": row["id"], "g": generation},
        )


def _aged(services: Services, table: str, label: str, days_old: int) -> None:
    if table == "otp_requests":
        services.db.execute(
            "INSERT INTO otp_requests (flow, phone, max_attempts, expires_at, created_at) "
            "VALUES ('customer', %(l)s, 5, now(), now() - make_interval(days => %(d)s))",
            {"l": label, "d": days_old},
        )
    else:
        services.db.execute(
            "INSERT INTO security_events (kind, created_at) VALUES (%(l)s, now() - make_interval(days => %(d)s))",
            {"l": label, "d": days_old},
        )


def _left(services: Services, sql: str) -> list[Any]:
    return sorted(next(iter(r.values())) for r in services.db.fetch_all(sql))


def test_old_rows_go_and_rows_still_needed_stay(services: Services, caplog: pytest.LogCaptureFixture) -> None:
    # Webhook logs past the 90 days: only those nobody can still need are deleted.
    _webhook_log(services, "pending", 100, request=_payment(services, "pending"))
    _webhook_log(services, "confirmed", 100, request=_payment(services, "confirmed"))
    _webhook_log(services, "refund-open", 100, request=_payment(services, "failed_pairing", open_failure=True))
    _webhook_log(services, "refunded", 100, request=_payment(services, "failed_pairing", open_failure=False))
    _webhook_log(services, "consumed", 100, request=_payment(services, "consumed"))
    _webhook_log(services, "quarantined", 100, outcome="quarantined_amount_mismatch")
    _webhook_log(services, "never-processed", 100, outcome=None)
    _webhook_log(services, "forged", 100, outcome="unauthorized")
    _webhook_log(services, "recent", 80, outcome="unauthorized")
    # Refresh sessions: ended more than 7 days ago go with all their tokens.
    _session(services, "revoked-long-ago", 3, revoked="-10 days", expires="+20 days")
    _session(services, "expired-long-ago", 1, revoked=None, expires="-8 days")
    _session(services, "revoked-yesterday", 1, revoked="-1 day", expires="+29 days")
    _session(services, "expired-yesterday", 1, revoked=None, expires="-1 day")
    _session(services, "live", 2, revoked=None, expires="+30 days")
    for table, days in (("otp_requests", 30), ("security_events", 365)):
        _aged(services, table, "old", days + 1)
        _aged(services, table, "young", days - 1)
    before = _deleted_so_far()

    with caplog.at_level(logging.INFO, logger="jobs.retention"):
        _run(services)

    assert _left(services, "SELECT external_id FROM webhook_logs") == sorted(
        ["pending", "confirmed", "refund-open", "quarantined", "never-processed", "recent"]
    )
    assert _left(services, "SELECT revoked_reason FROM auth_sessions") == sorted(
        ["revoked-yesterday", "expired-yesterday", "live"]
    )
    assert _left(services, "SELECT selector FROM auth_refresh_tokens") == sorted(
        ["revoked-yesterday-0", "expired-yesterday-0", "live-0", "live-1"]
    )
    assert _left(services, "SELECT phone FROM otp_requests") == ["young"]
    assert _left(services, "SELECT kind FROM security_events") == ["young"]
    lines = [r.getMessage() for r in caplog.records if r.name == "jobs.retention"]
    assert lines == [
        "retention deleted webhook_logs=3 refresh_tokens=4 auth_sessions=2 otp_requests=1 security_events=1"
    ]
    after = _deleted_so_far()
    assert {t: after[t] - before[t] for t in TABLES} == {
        "webhook_logs": 3,
        "refresh_tokens": 4,
        "auth_sessions": 2,
        "otp_requests": 1,
        "security_events": 1,
    }
    _run(services)  # nothing more to do: the next run deletes nothing
    assert _deleted_so_far() == after


@pytest.fixture
def no_grace(settings: Settings) -> Iterator[Services]:
    svc = build_services(replace(settings, refresh_token_retention_days=0), application_name="retention-0")
    yield svc
    svc.close()


def test_a_revoked_session_stays_while_its_access_tokens_can_live(no_grace: Services) -> None:
    """With REFRESH_TOKEN_RETENTION_DAYS=0, a session revoked a minute ago still stays: a process
    starting now learns the revocations of the last access-token lifetime from these rows."""
    _session(no_grace, "revoked-a-minute-ago", 1, revoked="-1 minute", expires="+30 days")
    _session(no_grace, "revoked-two-hours-ago", 1, revoked="-2 hours", expires="+30 days")
    _run(no_grace)
    assert _left(no_grace, "SELECT revoked_reason FROM auth_sessions") == ["revoked-a-minute-ago"]


def test_batches_are_bounded_and_skip_locked_rows(
    services: Services, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for i in range(8):
        _aged(services, "security_events", f"old-{i}", 400)
    monkeypatch.setattr(retention, "BATCH", 2)
    monkeypatch.setattr(retention, "BATCHES_PER_RUN", 2)
    # A row someone holds locked is skipped, never waited for.
    with services.db.dedicated("test-lock") as holder, holder.transaction():
        holder.execute("SELECT id FROM security_events WHERE kind = 'old-0' FOR UPDATE")
        with caplog.at_level(logging.INFO, logger="jobs.retention"):
            _run(services)  # 2 batches of 2: 4 rows, the rest next time
        assert len(_left(services, "SELECT kind FROM security_events")) == 4
        assert "security_events=4 (more left: security_events)" in caplog.text
        _run(services)
        _run(services)
    assert _left(services, "SELECT kind FROM security_events") == ["old-0"]
    _run(services)
    assert _left(services, "SELECT kind FROM security_events") == []
