"""What money received does, once per paid invoice (docs/payments.md). The webhook's PAID/SETTLED
callback, the reconciliation's poll and the closure job that finds an invoice paid all call
`settle`, so a paid invoice found by polling is acted on exactly as its callback would have been,
and whichever comes second is a duplicate.

In one transaction, under the request's row lock: the invoice is looked up in `paid_invoices` (seen:
duplicate, nothing changes), else recorded there with the outcome decided here:

- paid another amount or currency than asked: quarantined, nothing credited, a refund due;
- the request is pending, abandoned or expired, and can be served: confirmed (the caller emits
  `payments:confirmed`, which delivers). A session payment is served unless the customer has an
  open chat or another paid (confirmed) session payment; another *unpaid* request of theirs is
  superseded (abandoned, its invoice queued for closing) so that the money that came is served.
  An extension payment is served while its extension is still approved;
- it cannot be served: `failed_pairing` with its cause, a pairing failure and a refund due;
- the request had taken money already (another invoice): a refund due.

Nothing here raises for a known request's state: a callback is always answered 200 (webhook.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg

from lib.chat.pairing import ALREADY_ACTIVE
from lib.chat.states import OPEN
from lib.db import Conn, Database
from lib.payments.closures import queue
from lib.payments.gateway import Invoice
from lib.payments.refunds import AMOUNT_MISMATCH, EXTENSION_NOT_APPLIED, SECOND_PAYMENT, owe, record_failure

log = logging.getLogger(__name__)

CONFIRMABLE = ("pending", "expired", "abandoned")  # money that arrives for these is served when it can be
CONFIRMED, DUPLICATE, REFUND_DUE = "confirmed", "duplicate", "refund_due"
QUARANTINED, UNKNOWN = "quarantined_amount_mismatch", "unknown_payment_request"
_BIGINT = 2**63


def whole(value: Any) -> int | None:
    """A JSON number that is a whole amount (30000 or 30000.0), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


@dataclass(frozen=True)
class Paid:
    """Xendit's word that an invoice of ours was paid: what a callback or an invoice says."""

    request_id: str
    invoice_id: str | None
    amount: int | None  # paid_amount, else amount; None when neither is a whole number
    currency: str
    method: str | None
    channel: str | None
    source: str  # callback | poll | close

    @classmethod
    def from_invoice(cls, request_id: str, invoice: Invoice, source: str) -> Paid:
        raw = invoice.raw
        paid = whole(raw.get("paid_amount"))
        return cls(
            request_id=request_id,
            invoice_id=invoice.id,
            amount=paid if paid is not None else whole(raw.get("amount")),
            currency=str(raw.get("currency") or "IDR")[:10],
            method=_short(raw.get("payment_method")),
            channel=_short(raw.get("payment_channel")),
            source=source,
        )


def _short(value: Any) -> str | None:
    return str(value)[:60] if value is not None else None


@dataclass(frozen=True)
class Settled:
    outcome: str  # confirmed | duplicate | quarantined_amount_mismatch | refund_due | unknown_payment_request
    reason: str | None  # why a refund is due
    request: dict[str, Any] | None


def settle(db: Database, paid: Paid) -> Settled:
    amount = paid.amount if paid.amount is not None and -_BIGINT < paid.amount < _BIGINT else -1
    with db.connection() as conn:
        row = conn.execute(
            "SELECT * FROM payment_requests WHERE id = %(payment_request_id)s FOR UPDATE",
            {"payment_request_id": paid.request_id},
        ).fetchone()
        if row is None:
            return Settled(UNKNOWN, None, None)
        invoice = paid.invoice_id or row["xendit_invoice_id"] or f"unknown:{row['id']}"
        seen = conn.execute(
            "SELECT 1 FROM paid_invoices WHERE payment_request_id = %(payment_request_id)s AND invoice_id = %(invoice_id)s",
            {"payment_request_id": row["id"], "invoice_id": invoice},
        ).fetchone()
        if seen is not None:
            return Settled(DUPLICATE, None, row)
        reason: str | None
        if amount != row["amount"] or paid.currency != row["currency"]:
            log.error(
                "[ALERT] payment %s paid %s %s but %s %s is due: quarantined, nothing credited, refund due",
                row["id"],
                amount,
                paid.currency,
                row["amount"],
                row["currency"],
            )
            outcome, reason = QUARANTINED, AMOUNT_MISMATCH
            owe(conn, row, invoice, amount, paid.currency, reason)
        elif row["status"] not in CONFIRMABLE:
            outcome, reason = REFUND_DUE, SECOND_PAYMENT
            owe(conn, row, invoice, amount, paid.currency, reason)
        else:
            reason = _serve(conn, row, invoice, paid)
            outcome = CONFIRMED if reason is None else REFUND_DUE
        conn.execute(
            "INSERT INTO paid_invoices (payment_request_id, invoice_id, amount, currency, source, outcome) "
            "VALUES (%(payment_request_id)s, %(invoice_id)s, %(amount)s, %(currency)s, %(source)s, %(outcome)s)",
            {
                "payment_request_id": row["id"],
                "invoice_id": invoice,
                "amount": amount,
                "currency": paid.currency,
                "source": paid.source,
                "outcome": REFUND_DUE if outcome == REFUND_DUE else outcome,
            },
        )
        after = conn.execute(
            "SELECT * FROM payment_requests WHERE id = %(payment_request_id)s", {"payment_request_id": row["id"]}
        ).fetchone()
    if outcome == CONFIRMED and row["status"] != "pending":
        log.info("payment %s paid while %s: served", row["id"], row["status"])
    return Settled(outcome, reason, after)


def _serve(conn: Conn, row: dict[str, Any], invoice: str, paid: Paid) -> str | None:
    """Confirm a payable request, or fail it when what it pays for cannot be had; the cause, or None."""
    if row["kind"] == "extension":
        ext = conn.execute(
            "SELECT status FROM session_extensions WHERE id = %(extension_id)s", {"extension_id": row["extension_id"]}
        ).fetchone()
        if ext is None or ext["status"] != "approved":  # lapsed, cancelled: the chat it was for moved on
            return _unserved(conn, row, invoice, paid, EXTENSION_NOT_APPLIED)
        _confirm(conn, row, invoice, paid)
        return None
    open_chat = conn.execute(
        "SELECT 1 FROM chat_sessions WHERE customer_id = %(customer_id)s AND status = ANY(%(open)s) LIMIT 1",
        {"customer_id": row["customer_id"], "open": list(OPEN)},
    ).fetchone()
    if open_chat is not None:
        return _unserved(conn, row, invoice, paid, ALREADY_ACTIVE)
    # One open (pending or confirmed) session payment per customer is settled by the unique index
    # payment_requests_one_open. Another request in the way that is only pending loses to the money
    # that came: it is superseded and its invoice closed, and this one confirms. A paid one wins.
    for _ in range(2):
        try:
            with conn.transaction():  # a savepoint: the violation must not abort the whole callback
                _confirm(conn, row, invoice, paid)
            return None
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name != "payment_requests_one_open":
                raise
        other = conn.execute(
            "UPDATE payment_requests SET status = 'abandoned', failure_cause = 'SUPERSEDED', updated_at = now() "
            "WHERE customer_id = %(customer_id)s AND kind = 'session' AND status = 'pending' AND id <> %(payment_request_id)s RETURNING id",
            {"customer_id": row["customer_id"], "payment_request_id": row["id"]},
        ).fetchone()
        if other is None:
            break  # the request in the way is paid (confirmed): this money cannot buy a second chat
        queue(conn, other["id"], "superseded")
        log.info("payment %s supersedes %s: the paid one is served, the other's invoice closed", row["id"], other["id"])
    return _unserved(conn, row, invoice, paid, ALREADY_ACTIVE)


def _take(conn: Conn, row: dict[str, Any], invoice: str, paid: Paid, cause: str | None) -> dict[str, Any]:
    """The request took this invoice's money: confirmed (cause None, to be served) or failed_pairing."""
    taken = conn.execute(
        "UPDATE payment_requests SET status = %(status)s, failure_cause = %(cause)s, confirmed_at = now(), "
        "paid_amount = %(amount)s, paid_invoice_id = %(invoice_id)s, xendit_invoice_id = COALESCE(xendit_invoice_id, %(invoice_id)s), "
        "payment_method = %(method)s, payment_channel = %(channel)s, updated_at = now() WHERE id = %(payment_request_id)s RETURNING *",
        {
            "payment_request_id": row["id"],
            "status": "confirmed" if cause is None else "failed_pairing",
            "cause": cause,
            "amount": row["amount"],
            "invoice_id": invoice,
            "method": paid.method,
            "channel": paid.channel,
        },
    ).fetchone()
    assert taken is not None
    return taken


def _confirm(conn: Conn, row: dict[str, Any], invoice: str, paid: Paid) -> None:
    _take(conn, row, invoice, paid, None)


def _unserved(conn: Conn, row: dict[str, Any], invoice: str, paid: Paid, cause: str) -> str:
    failed = _take(conn, row, invoice, paid, cause)
    session_id = str(row["session_id"]) if row["kind"] == "extension" and row["session_id"] else None
    record_failure(conn, failed, cause, session_id)
    return cause
