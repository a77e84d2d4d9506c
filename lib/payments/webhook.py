"""Xendit invoice callbacks, in the order DOMAIN.md gives: log first, then authenticate, then act
once, then stamp the outcome. Shared by the webhook endpoint and the development confirm hook.

Logging stays cheap for whoever is not Xendit: a refused callback (wrong or missing token) keeps
only the first REFUSED_BODY_PREFIX bytes of its body, with the whole body's length and SHA-256, and
beyond WEBHOOK_REFUSED_PER_MINUTE of them from one address it is answered 429 without a log row.
An authenticated callback is logged verbatim and never limited: money is never refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from lib.config.env import Settings
from lib.db import Database
from lib.errors import ApiError, RateLimited, ServiceUnavailable, Unauthorized
from lib.inputs import safe_name
from lib.metrics import m
from lib.payments.closures import invoice_expired
from lib.payments.events import PaymentEvents
from lib.payments.settle import CONFIRMED, DUPLICATE, QUARANTINED, REFUND_DUE, Paid, settle, whole
from lib.ratelimit import RateLimiter
from lib.requests_ip import network_of

log = logging.getLogger(__name__)

PAID = ("PAID", "SETTLED")
# Bytes of a refused callback's body that are kept: enough to see what was sent (a Xendit invoice
# callback is ~1 KiB), while 200 refused 60 KiB posts store 200 KiB instead of 12 MB.
REFUSED_BODY_PREFIX = 1024


class Body(NamedTuple):
    """What is logged of a callback's body: all of it, or a refused one's prefix."""

    kept: bytes
    length: int
    sha256: str

    @classmethod
    def of(cls, raw: bytes, *, authentic: bool) -> Body:
        return cls(raw if authentic else raw[:REFUSED_BODY_PREFIX], len(raw), hashlib.sha256(raw).hexdigest())


def _parse(raw: bytes) -> dict[str, Any] | None:
    """The callback as a JSON object, or None when the body is anything else."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _text(value: Any, limit: int = 200) -> str | None:
    # Parsed columns are for searching, and the body is anyone's: text PostgreSQL or UTF-8 cannot
    # hold (NUL, a lone surrogate) becomes "?", or the log row itself would be refused (raw_body
    # keeps the bytes).
    return safe_name(str(value)[:limit]) if value is not None else None


def _log_row(db: Database, body: Body, data: dict[str, Any], client_ip: str) -> int:
    amount = data.get("amount")
    paid = data.get("paid_amount")
    row = db.fetch_one(
        "INSERT INTO webhook_logs (external_id, invoice_id, status, amount, paid_amount, currency, client_ip, "
        "raw_body, body_length, body_sha256) "
        "VALUES (%(external_id)s, %(invoice_id)s, %(status)s, %(amount)s, %(paid_amount)s, %(currency)s, %(client_ip)s, "
        "%(raw_body)s, %(body_length)s, %(body_sha256)s) RETURNING id",
        {
            "external_id": _text(data.get("external_id")),
            "invoice_id": _text(data.get("id")),
            "status": _text(data.get("status"), 40),
            "amount": amount if whole(amount) is not None else None,
            "paid_amount": paid if whole(paid) is not None else None,
            "currency": _text(data.get("currency"), 10),
            "client_ip": client_ip,
            "raw_body": body.kept,
            "body_length": body.length,
            "body_sha256": body.sha256,
        },
    )
    assert row is not None
    return int(row["id"])


def _fallback(s: Settings, body: Body, client_ip: str) -> bool:
    """When the log row cannot be written: a rolling JSONL file keeps the callback for replay."""
    if not s.xendit_webhook_fallback_enabled:
        return False
    now = datetime.now(UTC)
    path = Path(s.xendit_webhook_fallback_dir) / f"{s.xendit_webhook_fallback_name}-{now:%Y-%m-%d}.jsonl"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as sink:
            sink.write(
                json.dumps(
                    {
                        "received_at": now.isoformat(),
                        "client_ip": client_ip,
                        "raw_body": body.kept.decode("utf-8", errors="replace"),
                        "body_length": body.length,
                        "body_sha256": body.sha256,
                    }
                )
                + "\n"
            )
    except OSError:
        log.exception("webhook fallback sink failed too")
        return False
    return True


def _stamp(db: Database, log_id: int | None, outcome: str, request_id: str | None) -> None:
    # The status part of "ignored_status_<status>" comes from the body: one series for all of them.
    m().webhooks.labels("ignored_status" if outcome.startswith("ignored_status_") else outcome).inc()
    if log_id is None:
        return
    try:
        db.execute(
            "UPDATE webhook_logs SET outcome = %(outcome)s, payment_request_id = %(payment_request_id)s, processed_at = now() "
            "WHERE id = %(webhook_log_id)s",
            {"outcome": outcome, "payment_request_id": request_id, "webhook_log_id": log_id},
        )
    except ApiError:
        log.error("webhook %s: outcome %s not stamped (database unavailable)", log_id, outcome)


def _authentic(settings: Settings, token: str | None) -> bool:
    expected = settings.xendit_webhook_token
    return bool(expected) and hmac.compare_digest((token or "").encode(), expected.encode())


def handle_callback(
    db: Database,
    events: PaymentEvents,
    settings: Settings,
    raw: bytes,
    token: str | None,
    client_ip: str,
    *,
    limiter: RateLimiter | None = None,
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, Xendit-style reply) for one callback. `limiter` counts refused callbacks per
    client address; None only for the development confirm hook, which carries the real token."""
    authentic = _authentic(settings, token)  # no side effect: the log row still comes before any act
    if not authentic and limiter is not None:
        try:
            limiter.hit("webhook_refused", network_of(client_ip), settings.webhook_refused_per_minute, 60)
        except RateLimited:
            m().webhooks.labels("refused_rate_limited").inc()
            raise
    parsed = _parse(raw)
    data = parsed or {}
    body = Body.of(raw, authentic=authentic)
    try:
        log_id: int | None = _log_row(db, body, data, client_ip)
    except ApiError:
        log.error("webhook log row not written (database unavailable)")
        if not _fallback(settings, body, client_ip):
            raise
        log_id = None
    if not authentic:
        _stamp(db, log_id, "unauthorized", None)
        raise Unauthorized("Invalid callback token")
    if log_id is None:  # logged to the file only; nothing can change without the database
        m().webhooks.labels("database_unavailable").inc()
        raise ServiceUnavailable("Database unavailable", retry_after=30)
    if parsed is None:  # authenticated garbage: say so, rather than hide it behind an "ignored"
        _stamp(db, log_id, "malformed_body", None)
        return 400, {"ok": False, "error": "malformed_body"}
    return 200, _act(db, events, log_id, data)


def _act(db: Database, events: PaymentEvents, log_id: int, data: dict[str, Any]) -> dict[str, Any]:
    """A PAID or SETTLED callback for a request of ours is never refused: whatever the request's
    state, the money is settled (lib/payments/settle.py: served, or a refund due) and the outcome
    stamped. Only a database that cannot be reached leaves it unanswered (503: Xendit retries)."""
    external_id = data.get("external_id")
    try:
        request_id = str(uuid.UUID(str(external_id)))
    except ValueError:
        _stamp(db, log_id, "ignored_non_uuid_external_id", None)
        return {"ok": True, "ignored": "ignored_non_uuid_external_id"}
    status = (_text(data.get("status"), 40) or "").upper()
    if status in PAID:
        paid = whole(data.get("paid_amount"))
        settled = settle(
            db,
            Paid(
                request_id=request_id,
                invoice_id=_text(data.get("id")),
                amount=paid if paid is not None else whole(data.get("amount")),
                currency=safe_name(str(data.get("currency") or "IDR"))[:10],  # "ID\x00R" is "ID?R", not IDR
                method=_text(data.get("payment_method"), 60),
                channel=_text(data.get("payment_channel"), 60),
                source="callback",
            ),
        )
        _stamp(db, log_id, settled.outcome, request_id if settled.request else None)
        if settled.outcome == CONFIRMED:
            events.confirmed(request_id)
            return {"ok": True, "confirmed": True}
        if settled.outcome == QUARANTINED:
            return {"ok": True, "quarantined": True}
        if settled.outcome == DUPLICATE:
            return {"ok": True, "duplicate": True}
        if settled.outcome == REFUND_DUE:
            return {"ok": True, "refund_due": True, "reason": settled.reason}
        return {"ok": True, "ignored": settled.outcome}
    if status == "EXPIRED":
        with db.connection() as conn:
            outcome = invoice_expired(conn, request_id) or "ignored_expired_not_pending"
        _stamp(db, log_id, outcome, request_id)
        if outcome == "expired":
            return {"ok": True, "expired": True}
        if outcome == "invoice_closed":
            return {"ok": True, "closed": True}
        return {"ok": True, "ignored": outcome}
    _stamp(db, log_id, f"ignored_status_{status.lower() or 'missing'}"[:60], request_id)
    return {"ok": True, "ignored": status or "missing_status"}
