"""Refunds due: money Xendit received that bought nothing (docs/payments.md). Exactly one row per
such paid invoice (unique on request and invoice), written in the transaction that decides the
money cannot be served; a person sends the money back by hand and records the transfer's reference
here, once (the row is then write-once: the audit of who recorded which transfer, and when)."""

from __future__ import annotations

import logging
from typing import Any

from lib.db import Conn, Database
from lib.errors import Conflict, NotFound

log = logging.getLogger(__name__)

# Why money is owed back. The pairing causes (lib/chat/pairing.py, also pairing_failures.cause) and:
EXTENSION_NOT_APPLIED = "EXTENSION_NOT_APPLIED"  # an extension paid after it had lapsed or was cancelled
AMOUNT_MISMATCH = "AMOUNT_MISMATCH"  # paid another amount or currency than asked: quarantined, never credited
SECOND_PAYMENT = "SECOND_PAYMENT"  # a request already paid was paid again through another invoice


class RefundAlreadyRecorded(Conflict):
    code, message = "REFUND_ALREADY_RECORDED", "This refund is recorded with another reference"


def refund_doc(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "status": "done" if row["refunded_at"] is not None else "due",
        "payment_request_id": row["payment_request_id"],
        "customer_id": row["customer_id"],
        "kind": row.get("kind"),
        "invoice_id": row["invoice_id"],
        "amount": row["amount"],
        "currency": row["currency"],
        "reason": row["reason"],
        "created_at": row["created_at"],
        "refunded_at": row["refunded_at"],
        "reference": row["reference"],
        "refunded_by": row["refunded_by"],
    }


def owe(conn: Conn, request: dict[str, Any], invoice_id: str, amount: int, currency: str, reason: str) -> None:
    """A refund due for this paid invoice of the request; a second call for the same invoice is a no-op."""
    conn.execute(
        "INSERT INTO refunds (payment_request_id, customer_id, invoice_id, amount, currency, reason) "
        "VALUES (%(payment_request_id)s, %(customer_id)s, %(invoice_id)s, %(amount)s, %(currency)s, %(reason)s) ON "
        "CONFLICT (payment_request_id, invoice_id) DO NOTHING",
        {
            "payment_request_id": request["id"],
            "customer_id": request["customer_id"],
            "invoice_id": invoice_id,
            "amount": amount,
            "currency": currency,
            "reason": reason,
        },
    )
    log.warning("payment %s: %s %s owed back for invoice %s (%s)", request["id"], amount, currency, invoice_id, reason)


def record_failure(conn: Conn, request: dict[str, Any], cause: str, session_id: str | None) -> None:
    """A paid request (already `failed_pairing`) that bought no chat: the pairing failure the control
    center reviews, and the refund due for the money it took."""
    conn.execute(
        "INSERT INTO pairing_failures (payment_request_id, customer_id, cause, session_id) "
        "VALUES (%(payment_request_id)s, %(customer_id)s, %(cause)s, %(session_id)s) ON CONFLICT (payment_request_id) DO NOTHING",
        {
            "payment_request_id": request["id"],
            "customer_id": request["customer_id"],
            "cause": cause,
            "session_id": session_id,
        },
    )
    invoice = request["paid_invoice_id"] or request["xendit_invoice_id"] or f"unknown:{request['id']}"
    paid = request["paid_amount"] if request["paid_amount"] is not None else request["amount"]
    owe(conn, request, invoice, paid, request["currency"], cause)


def mark_refunded(db: Database, refund_id: str, reference: str, by: str) -> dict[str, Any]:
    """Record the transfer that sent a refund back. Idempotent: the same reference again answers the
    same refund; another reference is 409 (racing marks: one conditional UPDATE wins). The pairing
    failure the refund settles is marked refunded in the same transaction, so both views agree."""
    with db.connection() as conn:
        row = conn.execute(
            "UPDATE refunds SET refunded_at = now(), reference = %(reference)s, refunded_by = %(refunded_by)s "
            "WHERE id = %(refund_id)s AND refunded_at IS NULL RETURNING *",
            {"refund_id": refund_id, "reference": reference, "refunded_by": by},
        ).fetchone()
        if row is None:
            current = conn.execute(
                "SELECT * FROM refunds WHERE id = %(refund_id)s", {"refund_id": refund_id}
            ).fetchone()
            if current is None:
                raise NotFound()
            if current["reference"] != reference:
                raise RefundAlreadyRecorded(details={"reference": current["reference"]})
            row = current
        else:
            conn.execute(
                "UPDATE pairing_failures SET review_status = 'refunded', reviewed_by = %(reviewed_by)s, reviewed_at = now(), "
                "updated_at = now() WHERE payment_request_id = %(payment_request_id)s AND cause = %(reason)s "
                "AND review_status <> 'refunded'",
                {"reviewed_by": by, "payment_request_id": row["payment_request_id"], "reason": row["reason"]},
            )
            log.info("refund %s recorded by %s with reference %r", refund_id, by, reference)
        kind = conn.execute(
            "SELECT kind FROM payment_requests WHERE id = %(payment_request_id)s",
            {"payment_request_id": row["payment_request_id"]},
        ).fetchone()
    return refund_doc({**row, "kind": kind["kind"] if kind else None})


def due_summary(db: Database) -> dict[str, Any]:
    """Refunds due now: how many, how much, and since when the oldest waits."""
    row = db.fetch_one(
        "SELECT count(*) AS count, COALESCE(sum(amount), 0) AS amount, min(created_at) AS oldest_created_at "
        "FROM refunds WHERE refunded_at IS NULL"
    )
    assert row is not None
    return {"count": int(row["count"]), "amount": int(row["amount"]), "oldest_created_at": row["oldest_created_at"]}
