"""Xendit invoice callbacks, in the order DOMAIN.md gives: log first, then authenticate, then act
once, then stamp the outcome. Shared by the webhook endpoint and the development confirm hook."""

from __future__ import annotations

import hmac
import json
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lib.config.env import Settings
from lib.db import Database
from lib.errors import ApiError, ServiceUnavailable, Unauthorized
from lib.metrics import m
from lib.payments.events import PaymentEvents
from lib.payments.requests import confirm, expire

log = logging.getLogger(__name__)

PAID = ("PAID", "SETTLED")


def _number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _parse(raw: bytes) -> dict[str, Any] | None:
    """The callback as a JSON object, or None when the body is anything else."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _text(value: Any, limit: int = 200) -> str | None:
    # Parsed columns are for searching; PostgreSQL text cannot hold NUL (the raw body keeps all).
    return str(value).replace("\x00", "")[:limit] if value is not None else None


def _log_row(db: Database, raw: bytes, data: dict[str, Any], client_ip: str) -> int:
    amount = data.get("amount")
    paid = data.get("paid_amount")
    row = db.fetch_one(
        "INSERT INTO webhook_logs (external_id, invoice_id, status, amount, paid_amount, currency, client_ip, raw_body) "
        "VALUES (%(e)s, %(i)s, %(s)s, %(a)s, %(p)s, %(c)s, %(ip)s, %(raw)s) RETURNING id",
        {
            "e": _text(data.get("external_id")),
            "i": _text(data.get("id")),
            "s": _text(data.get("status"), 40),
            "a": amount if _number(amount) is not None else None,
            "p": paid if _number(paid) is not None else None,
            "c": _text(data.get("currency"), 10),
            "ip": client_ip,
            "raw": raw,
        },
    )
    assert row is not None
    return int(row["id"])


def _fallback(s: Settings, raw: bytes, client_ip: str) -> bool:
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
                        "raw_body": raw.decode("utf-8", errors="replace"),
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
            "UPDATE webhook_logs SET outcome = %(o)s, payment_request_id = %(r)s, processed_at = now() "
            "WHERE id = %(id)s",
            {"o": outcome, "r": request_id, "id": log_id},
        )
    except ApiError:
        log.error("webhook %s: outcome %s not stamped (database unavailable)", log_id, outcome)


def handle_callback(
    db: Database, events: PaymentEvents, settings: Settings, raw: bytes, token: str | None, client_ip: str
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, Xendit-style reply) for one callback."""
    parsed = _parse(raw)
    data = parsed or {}
    try:
        log_id: int | None = _log_row(db, raw, data, client_ip)
    except ApiError:
        log.error("webhook log row not written (database unavailable)")
        if not _fallback(settings, raw, client_ip):
            raise
        log_id = None
    expected = settings.xendit_webhook_token
    if not expected or not hmac.compare_digest((token or "").encode(), expected.encode()):
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
    external_id = data.get("external_id")
    try:
        request_id = str(uuid.UUID(str(external_id)))
    except ValueError:
        _stamp(db, log_id, "ignored_non_uuid_external_id", None)
        return {"ok": True, "ignored": "ignored_non_uuid_external_id"}
    status = str(data.get("status", "")).upper()
    if status in PAID:
        paid = _number(data.get("paid_amount"))
        amount = paid if paid is not None else _number(data.get("amount"))
        outcome, row = confirm(
            db,
            request_id,
            amount=amount if amount is not None else -1,
            currency=str(data.get("currency") or "IDR"),
            invoice_id=_text(data.get("id")),
            method=_text(data.get("payment_method"), 60),
            channel=_text(data.get("payment_channel"), 60),
        )
        _stamp(db, log_id, outcome, request_id if row else None)
        if outcome == "confirmed":
            events.confirmed(request_id)
            return {"ok": True, "confirmed": True}
        if outcome == "quarantined_amount_mismatch":
            return {"ok": True, "quarantined": True}
        if outcome == "duplicate":
            return {"ok": True, "duplicate": True}
        return {"ok": True, "ignored": outcome}
    if status == "EXPIRED":
        outcome = "expired" if expire(db, request_id) else "ignored_expired_not_pending"
        _stamp(db, log_id, outcome, request_id)
        return (
            {"ok": True, "expired": outcome == "expired"} if outcome == "expired" else {"ok": True, "ignored": outcome}
        )
    _stamp(db, log_id, f"ignored_status_{status.lower() or 'missing'}"[:60], request_id)
    return {"ok": True, "ignored": status or "missing_status"}
