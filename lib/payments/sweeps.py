"""Worker-side payment upkeep: expiry, reconciliation with Xendit, re-emitting confirmations."""

from __future__ import annotations

import logging

from lib.db import Database
from lib.errors import ApiError
from lib.payments.events import PaymentEvents
from lib.payments.gateway import Gateway
from lib.payments.requests import attach_invoice, confirm, expire

log = logging.getLogger(__name__)

RECONCILE_AFTER_SECONDS = 180  # a callback normally arrives within seconds of payment
RECONCILE_EVERY_SECONDS = 120  # per request, so a long-pending invoice is not polled every tick
REEMIT_AFTER_SECONDS = 30  # a confirmed request with no session by then: tell pairing again
RECOVER_AFTER_SECONDS = 15  # a request still without an invoice by then: its create call has ended
ORPHAN_SECONDS = 120  # no invoice at Xendit this long after creation: none will appear


def expire_overdue(db: Database) -> list[str]:
    rows = db.fetch_all(
        "UPDATE payment_requests SET status = 'expired', updated_at = now() "
        "WHERE status = 'pending' AND expires_at <= now() RETURNING id"
    )
    return [str(r["id"]) for r in rows]


def recover_invoices(db: Database, gateway: Gateway, limit: int = 50) -> dict[str, str]:
    """Pending requests without an invoice: their create call timed out (or the process died during
    it). Look each up at Xendit by our id, never create again: found -> attached (the customer can
    pay, reconciliation and callbacks confirm); none long after creation -> expired, which frees the
    customer's one open request. A PAID callback still confirms an expired request."""
    rows = db.fetch_all(
        "UPDATE payment_requests SET last_reconciled_at = now() WHERE id IN ("
        " SELECT id FROM payment_requests WHERE status = 'pending' AND invoice_url IS NULL "
        " AND created_at < now() - make_interval(secs => %(after)s) "
        " AND (last_reconciled_at IS NULL OR last_reconciled_at < now() - make_interval(secs => %(after)s)) "
        " ORDER BY created_at LIMIT %(n)s FOR UPDATE SKIP LOCKED) "
        "RETURNING id, created_at < now() - make_interval(secs => %(orphan)s) AS orphaned",
        {"after": RECOVER_AFTER_SECONDS, "orphan": ORPHAN_SECONDS, "n": limit},
    )
    outcomes: dict[str, str] = {}
    for row in rows:
        request_id = str(row["id"])
        try:
            invoice = gateway.find_invoice(request_id)
        except ApiError as exc:
            log.warning("recover %s: %s", request_id, exc.code)
            outcomes[request_id] = "gateway_error"
            continue
        if invoice is not None:
            attach_invoice(db, request_id, invoice)
            log.info("recover %s: invoice %s found by external_id", request_id, invoice.id)
            outcomes[request_id] = "recovered"
        elif row["orphaned"]:
            outcomes[request_id] = "expired" if expire(db, request_id) else "unchanged"
        else:
            outcomes[request_id] = "not_found_yet"
    return outcomes


def reconcile(db: Database, gateway: Gateway, events: PaymentEvents, limit: int = 50) -> dict[str, str]:
    """Ask Xendit about pending invoices older than a few minutes: a callback that timed out is
    never retried by Xendit, so without this a paid customer could wait forever."""
    rows = db.fetch_all(
        "UPDATE payment_requests SET last_reconciled_at = now() WHERE id IN ("
        " SELECT id FROM payment_requests WHERE status = 'pending' AND xendit_invoice_id IS NOT NULL "
        " AND created_at < now() - make_interval(secs => %(after)s) "
        " AND (last_reconciled_at IS NULL OR last_reconciled_at < now() - make_interval(secs => %(every)s)) "
        " ORDER BY created_at LIMIT %(n)s FOR UPDATE SKIP LOCKED) "
        "RETURNING id, xendit_invoice_id, amount, currency",
        {"after": RECONCILE_AFTER_SECONDS, "every": RECONCILE_EVERY_SECONDS, "n": limit},
    )
    outcomes: dict[str, str] = {}
    for row in rows:
        request_id = str(row["id"])
        try:
            invoice = gateway.get_invoice(row["xendit_invoice_id"])
        except ApiError as exc:
            log.warning("reconcile %s: %s", request_id, exc.code)
            outcomes[request_id] = "gateway_error"
            continue
        status = invoice.status.upper()
        if status in ("PAID", "SETTLED"):
            raw = invoice.raw
            paid = raw.get("paid_amount", raw.get("amount"))
            outcome, _ = confirm(
                db,
                request_id,
                amount=paid if isinstance(paid, int) else -1,
                currency=str(raw.get("currency") or "IDR"),
                invoice_id=invoice.id,
                method=raw.get("payment_method"),
                channel=raw.get("payment_channel"),
            )
            if outcome == "confirmed":
                log.info("reconcile %s: confirmed from Xendit's invoice status", request_id)
                events.confirmed(request_id)
        elif status == "EXPIRED":
            outcome = "expired" if expire(db, request_id) else "unchanged"
        else:
            outcome = "still_pending"
        outcomes[request_id] = outcome
    return outcomes


def reemit_unpaired(db: Database, events: PaymentEvents) -> list[str]:
    """Confirmed requests that no session has consumed yet: emit the event again (pairing is
    idempotent), in case the first emit died with its process."""
    rows = db.fetch_all(
        "UPDATE payment_requests SET last_emitted_at = now() WHERE status = 'confirmed' "
        "AND (session_id IS NULL OR kind = 'extension') "
        "AND confirmed_at < now() - make_interval(secs => %(s)s) "
        "AND (last_emitted_at IS NULL OR last_emitted_at < now() - make_interval(secs => %(s)s)) RETURNING id",
        {"s": REEMIT_AFTER_SECONDS},
    )
    ids = [str(r["id"]) for r in rows]
    for request_id in ids:
        events.confirmed(request_id)
    return ids
