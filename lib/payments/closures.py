"""Invoices we give up on are closed at Xendit (docs/payments.md): whoever abandons, expires or
supersedes a request queues its invoice in `invoice_closures`, in the same transaction, and the
payment_close job expires it at Xendit with a growing backoff (lib/payments/sweeps.py). When Xendit
reports the invoice expired, by a callback or a poll, that is recorded here too."""

from __future__ import annotations

from typing import Any

from lib.db import Conn

REASONS = ("abandoned", "expired", "superseded", "orphaned", "extension_lapsed", "extension_cancelled")
UNPAID = ("pending", "abandoned", "expired")  # statuses whose invoice may still be paid


def queue(conn: Conn, request_id: Any, reason: str) -> None:
    """Close this request's invoice at Xendit soon; a second call for the same request is a no-op."""
    assert reason in REASONS
    conn.execute(
        "INSERT INTO invoice_closures (payment_request_id, reason) VALUES (%(payment_request_id)s, %(reason)s) "
        "ON CONFLICT (payment_request_id) DO NOTHING",
        {"payment_request_id": request_id, "reason": reason},
    )


def expire_pending(conn: Conn, request_id: Any, reason: str) -> bool:
    """A pending request that can no longer buy anything expires, and its invoice is queued for
    closing; False when it was not pending (paid meanwhile, or already given up)."""
    gone = conn.execute(
        "UPDATE payment_requests SET status = 'expired', updated_at = now() "
        "WHERE id = %(payment_request_id)s AND status = 'pending' RETURNING id",
        {"payment_request_id": request_id},
    ).fetchone()
    if gone is not None:
        queue(conn, request_id, reason)
    return gone is not None


def mark_closed(conn: Conn, request_id: Any, outcome: str) -> None:
    """The closure is done: the invoice is expired (by us or by Xendit), was paid, or never existed.
    The request records when its invoice was known closed, unless the invoice was paid."""
    conn.execute(
        "UPDATE invoice_closures SET closed_at = now(), outcome = %(outcome)s, last_error = NULL "
        "WHERE payment_request_id = %(payment_request_id)s AND closed_at IS NULL",
        {"payment_request_id": request_id, "outcome": outcome},
    )
    if outcome != "paid":
        conn.execute(
            "UPDATE payment_requests SET invoice_closed_at = COALESCE(invoice_closed_at, now()), updated_at = now() "
            "WHERE id = %(payment_request_id)s AND invoice_closed_at IS NULL",
            {"payment_request_id": request_id},
        )


def invoice_expired(conn: Conn, request_id: str) -> str | None:
    """Xendit says the request's invoice expired (a callback or a poll): a pending request expires,
    and an unpaid one records its invoice closed. 'expired' | 'invoice_closed', or None when there
    is nothing to do (no such request, or one that took money: an EXPIRED never undoes a payment)."""
    row = conn.execute(
        "SELECT status FROM payment_requests WHERE id = %(payment_request_id)s FOR UPDATE",
        {"payment_request_id": request_id},
    ).fetchone()
    if row is None or row["status"] not in UNPAID:
        return None
    conn.execute(
        "UPDATE payment_requests SET status = CASE WHEN status = 'pending' THEN 'expired' ELSE status END, "
        "invoice_closed_at = COALESCE(invoice_closed_at, now()), updated_at = now() WHERE id = %(payment_request_id)s",
        {"payment_request_id": request_id},
    )
    mark_closed(conn, request_id, "already_expired")
    return "expired" if row["status"] == "pending" else "invoice_closed"
