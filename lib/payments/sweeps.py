"""Worker-side payment upkeep: expiry, invoice recovery, closing abandoned invoices at Xendit,
reconciliation with Xendit (polling every invoice that may still be paid), re-emitting confirmations."""

from __future__ import annotations

import logging
from typing import Any

from lib.db import Database
from lib.errors import ApiError
from lib.metrics import m
from lib.payments.closures import expire_pending, invoice_expired, mark_closed
from lib.payments.events import PaymentEvents
from lib.payments.gateway import Gateway, GatewayRefused, Invoice
from lib.payments.requests import attach_invoice
from lib.payments.settle import CONFIRMED, Paid, settle

log = logging.getLogger(__name__)

RECONCILE_AFTER_SECONDS = 180  # a callback normally arrives within seconds of payment
RECONCILE_EVERY_SECONDS = 120  # per request, so a long-pending invoice is not polled every tick
POLL_FOR_DAYS = 30  # an invoice Xendit never gives a final status for is not polled forever
REEMIT_AFTER_SECONDS = 30  # a confirmed request with no session by then: tell pairing again
RECOVER_AFTER_SECONDS = 15  # a request still without an invoice by then: its create call has ended
ORPHAN_SECONDS = 120  # no invoice at Xendit this long after creation: none will appear
CLOSE_BACKOFF_SECONDS = 30  # a closure's retries wait 30 s, 60 s, 120 s, ... up to CLOSE_BACKOFF_MAX_SECONDS
CLOSE_BACKOFF_MAX_SECONDS = 3600


def expire_overdue(db: Database) -> list[str]:
    """Pending requests past their time: expired, and each invoice queued for closing at Xendit."""
    rows = db.fetch_all(
        "WITH gone AS (UPDATE payment_requests SET status = 'expired', updated_at = now() "
        " WHERE status = 'pending' AND expires_at <= now() RETURNING id), "
        "closing AS (INSERT INTO invoice_closures (payment_request_id, reason) SELECT id, 'expired' FROM gone "
        " ON CONFLICT (payment_request_id) DO NOTHING) "
        "SELECT id FROM gone"
    )
    return [str(r["id"]) for r in rows]


def _expire_orphan(db: Database, request_id: str) -> bool:
    """A request Xendit never answered the create of, and holds no invoice for: expired. Its closure
    looks once more by our id before it gives up (an invoice could appear late)."""
    with db.connection() as conn:
        return expire_pending(conn, request_id, "orphaned")


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
        " ORDER BY created_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
        "RETURNING id, created_at < now() - make_interval(secs => %(orphan)s) AS orphaned",
        {"after": RECOVER_AFTER_SECONDS, "orphan": ORPHAN_SECONDS, "limit": limit},
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
            outcomes[request_id] = "expired" if _expire_orphan(db, request_id) else "unchanged"
        else:
            outcomes[request_id] = "not_found_yet"
    return outcomes


def reconcile(db: Database, gateway: Gateway, events: PaymentEvents, limit: int = 100) -> dict[str, str]:
    """Poll Xendit for every invoice that may still be paid: those of pending, abandoned and expired
    requests (extension requests with their short windows too) that took no money yet and whose
    invoice is not known closed, every RECONCILE_EVERY_SECONDS from RECONCILE_AFTER_SECONDS after
    creation until Xendit gives a final answer (PAID or EXPIRED: at the latest at its own expiry).
    Xendit never retries a callback that timed out; a paid invoice found here is settled exactly as
    its callback would have been, and a late callback after that is a duplicate."""
    rows = db.fetch_all(
        "UPDATE payment_requests SET last_reconciled_at = now() WHERE id IN ("
        " SELECT p.id FROM payment_requests p WHERE p.xendit_invoice_id IS NOT NULL AND p.paid_invoice_id IS NULL "
        " AND p.invoice_closed_at IS NULL AND p.status IN ('pending', 'abandoned', 'expired') "
        " AND p.created_at < now() - make_interval(secs => %(after)s) "
        " AND p.created_at > now() - make_interval(days => %(days)s) "
        " AND (p.last_reconciled_at IS NULL OR p.last_reconciled_at < now() - make_interval(secs => %(every)s)) "
        " AND NOT EXISTS (SELECT 1 FROM paid_invoices i WHERE i.payment_request_id = p.id "
        "                 AND i.invoice_id = p.xendit_invoice_id) "
        " ORDER BY p.created_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
        "RETURNING id, xendit_invoice_id",
        {
            "after": RECONCILE_AFTER_SECONDS,
            "every": RECONCILE_EVERY_SECONDS,
            "days": POLL_FOR_DAYS,
            "limit": limit,
        },
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
        if invoice.paid:
            outcome = _settle_found(db, events, request_id, invoice, "poll")
            log.info("reconcile %s: Xendit says %s: %s", request_id, invoice.status, outcome)
        elif invoice.status.upper() == "EXPIRED":
            with db.connection() as conn:
                outcome = invoice_expired(conn, request_id) or "unchanged"
        else:
            outcome = "still_pending"
        outcomes[request_id] = outcome
    return outcomes


def _settle_found(db: Database, events: PaymentEvents, request_id: str, invoice: Invoice, source: str) -> str:
    settled = settle(db, Paid.from_invoice(request_id, invoice, source))
    if settled.outcome == CONFIRMED:
        events.confirmed(request_id)
    return settled.outcome


def close_invoices(db: Database, gateway: Gateway, events: PaymentEvents, limit: int = 50) -> dict[str, str]:
    """Work through `invoice_closures`: expire each invoice at Xendit (POST /invoices/{id}/expire!).
    Each row is claimed by pushing its next attempt out by a growing backoff before Xendit is asked,
    so a crash, a timeout or an outage only delays it. Xendit refusing (the invoice is paid or
    expired already) is answered by asking for the invoice: paid -> settled as its callback would
    be; expired -> closed. An invoice not known yet (its create call got no answer) is looked up by
    our id first; none at all long after creation -> nothing to close."""
    rows = db.fetch_all(
        "UPDATE invoice_closures c SET attempts = c.attempts + 1, "
        "next_attempt_at = now() + make_interval(secs => LEAST(%(backoff_cap_seconds)s, %(backoff_seconds)s * 2 ^ LEAST(c.attempts, 16))) "
        "FROM payment_requests p WHERE p.id = c.payment_request_id AND c.payment_request_id IN ("
        " SELECT payment_request_id FROM invoice_closures WHERE closed_at IS NULL AND next_attempt_at <= now() "
        " ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
        "RETURNING c.payment_request_id, c.attempts, p.xendit_invoice_id, p.paid_invoice_id, "
        "p.created_at < now() - make_interval(secs => %(orphan)s) AS orphaned",
        {
            "backoff_cap_seconds": CLOSE_BACKOFF_MAX_SECONDS,
            "backoff_seconds": CLOSE_BACKOFF_SECONDS,
            "limit": limit,
            "orphan": ORPHAN_SECONDS,
        },
    )
    outcomes = {str(row["payment_request_id"]): _close_one(db, gateway, events, row) for row in rows}
    for outcome in outcomes.values():
        m().invoice_closures.labels(outcome if outcome in _CLOSED else "retry").inc()
    return outcomes


_CLOSED = ("expired", "already_expired", "paid", "no_invoice")


def _close_one(db: Database, gateway: Gateway, events: PaymentEvents, row: dict[str, Any]) -> str:
    request_id = str(row["payment_request_id"])
    invoice_id = row["xendit_invoice_id"]
    if invoice_id is not None and row["paid_invoice_id"] == invoice_id:
        return _closed(db, request_id, "paid")  # paid and settled meanwhile: nothing left to close
    try:
        if invoice_id is None:
            found = gateway.find_invoice(request_id)
            if found is None:
                return _closed(db, request_id, "no_invoice") if row["orphaned"] else _retry(db, request_id, "not_found")
            attach_invoice(db, request_id, found)
            invoice_id = found.id
        try:
            invoice, outcome = gateway.expire_invoice(invoice_id), "expired"
        except GatewayRefused:
            invoice, outcome = gateway.get_invoice(invoice_id), "already_expired"
    except GatewayRefused as exc:
        if exc.http_status == 404:
            return _closed(db, request_id, "no_invoice")
        return _retry(db, request_id, f"refused {exc.http_status} {exc.error_code or ''}".strip())
    except ApiError as exc:  # a timeout, a 5xx, no connection: not a failure, the next attempt will tell
        log.warning("closing the invoice of %s: %s; retried later", request_id, exc.code)
        return _retry(db, request_id, exc.code)
    if invoice.paid:
        outcome = _settle_found(db, events, request_id, invoice, "close")
        log.info("closing the invoice of %s: Xendit says it is paid: %s", request_id, outcome)
        return _closed(db, request_id, "paid")
    if invoice.status.upper() == "EXPIRED":
        return _closed(db, request_id, outcome)
    return _retry(db, request_id, f"status {invoice.status[:20]}")


def _closed(db: Database, request_id: str, outcome: str) -> str:
    with db.connection() as conn:
        mark_closed(conn, request_id, outcome)
    return outcome


def _retry(db: Database, request_id: str, error: str) -> str:
    db.execute(
        "UPDATE invoice_closures SET last_error = %(last_error)s WHERE payment_request_id = %(payment_request_id)s",
        {"last_error": error[:200], "payment_request_id": request_id},
    )
    return f"retry: {error}"


def reemit_unpaired(db: Database, events: PaymentEvents) -> list[str]:
    """Confirmed requests that no session has consumed yet: emit the event again (pairing is
    idempotent), in case the first emit died with its process."""
    rows = db.fetch_all(
        "UPDATE payment_requests SET last_emitted_at = now() WHERE status = 'confirmed' "
        "AND (session_id IS NULL OR kind = 'extension') "
        "AND confirmed_at < now() - make_interval(secs => %(reemit_after_seconds)s) "
        "AND (last_emitted_at IS NULL OR last_emitted_at < now() - make_interval(secs => %(reemit_after_seconds)s)) RETURNING id",
        {"reemit_after_seconds": REEMIT_AFTER_SECONDS},
    )
    ids = [str(r["id"]) for r in rows]
    for request_id in ids:
        events.confirmed(request_id)
    return ids
