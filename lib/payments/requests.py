"""Payment requests: creation (server-side price, Idempotency-Key, one open request per
customer), reads, abandon, and the transitions the webhook and the worker apply."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import redis

from lib.chat.states import OPEN
from lib.config.app import AppConfig
from lib.constraints import IdempotencyKeyTaken
from lib.db import Database
from lib.errors import ApiError, Conflict, NotFound, Unauthorized, ValidationFailed
from lib.kept import Changes, Kept
from lib.payments.closures import queue
from lib.payments.gateway import Gateway, GatewayError, Invoice, InvoiceOutcomeUnknown
from lib.presence.availability import find_available_mitras
from lib.pricing import quote
from lib.ratelimit import RateLimiter

log = logging.getLogger(__name__)


def request_doc(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": row["kind"],  # session | extension: the app's waiting screen says which it pays for
        "status": row["status"],
        "mode": row["mode"],
        "tier_id": row["tier_id"],
        "minutes": row["minutes"],
        "price": row["price"],
        "discount": row["discount"],
        "amount": row["amount"],
        "currency": row["currency"],
        "topic_sensitivity": row["topic_sensitivity"],
        "targeted_mitra_id": row["targeted_mitra_id"],
        "invoice_url": row["invoice_url"],
        "expires_at": row["expires_at"],
        "confirmed_at": row["confirmed_at"],
        "session_id": row["session_id"],
        "created_at": row["created_at"],
    }


def admin_doc(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **request_doc(row),
        "customer_id": row["customer_id"],
        "xendit_invoice_id": row["xendit_invoice_id"],
        "paid_amount": row["paid_amount"],
        "payment_method": row["payment_method"],
        "payment_channel": row["payment_channel"],
        "failure_cause": row["failure_cause"],
        "paid_invoice_id": row["paid_invoice_id"],
        "invoice_expires_at": row["invoice_expires_at"],
        "invoice_closed_at": row["invoice_closed_at"],
        "updated_at": row["updated_at"],
    }


def body_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _replay(db: Database, customer_id: str, key: str, digest: str) -> dict[str, Any] | None:
    row = db.fetch_one(
        "SELECT * FROM payment_requests WHERE customer_id = %(customer_id)s AND idempotency_key = %(idempotency_key)s",
        {"customer_id": customer_id, "idempotency_key": key},
    )
    if row is None:
        return None
    if row["request_hash"] != digest:
        raise ValidationFailed(
            {"Idempotency-Key": ["Already used with a different request body."]}, code="IDEMPOTENCY_MISMATCH"
        )
    if row["invoice_url"] is None:
        raise IdempotencyKeyTaken(details={"payment_request_id": str(row["id"])})
    return request_doc(row)


def create_request(
    db: Database,
    valkey: redis.Redis,
    config: AppConfig,
    gateway: Gateway,
    customer_id: str,
    body: dict[str, Any],
    idempotency_key: str | None,
    *,
    limiter: RateLimiter,
    per_hour: int,
) -> dict[str, Any]:
    """The new request's document; a replayed Idempotency-Key (same body) returns the first answer.

    At most `per_hour` new requests per customer per hour (each one is a Xendit invoice), counted
    after the replay check (a replay costs nothing) and before anything is stored or sent to Xendit.
    """
    digest = body_hash(body)
    if idempotency_key:
        replay = _replay(db, customer_id, idempotency_key, digest)
        if replay is not None:
            return replay
    live = db.fetch_one(
        "SELECT 1 FROM chat_sessions WHERE customer_id = %(customer_id)s AND status = ANY(%(open_statuses)s) LIMIT 1",
        {"customer_id": customer_id, "open_statuses": list(OPEN)},
    )
    if live is not None:
        raise Conflict("You already have a chat in progress", code="ALREADY_ACTIVE")
    targeted = str(body["targeted_mitra_id"]) if body.get("targeted_mitra_id") else None
    available = find_available_mitras(db, valkey, config)
    if targeted and targeted not in available:
        raise Conflict("This Bestie is not available right now", code="MITRA_UNAVAILABLE")
    if not targeted and not available:
        raise Conflict("No Bestie is available right now; no payment was taken", code="NO_MITRA_AVAILABLE")
    minutes_valid = config.int("payment_request_timeout_minutes")
    limiter.hit(
        "payment-request",
        customer_id,
        per_hour,
        3600,
        message="Too many payment requests; try again later",
    )
    try:
        with db.connection() as conn:
            price = quote(conn, str(body["tier_id"]), customer_id, mode=body["mode"])
            row = conn.execute(
                "INSERT INTO payment_requests (customer_id, mode, tier_id, minutes, price, discount, amount, "
                "topic_sensitivity, targeted_mitra_id, idempotency_key, request_hash, expires_at) "
                "SELECT id, %(mode)s, %(tier_id)s, %(minutes)s, %(price)s, %(discount)s, %(amount)s, %(topic)s, "
                "%(target)s, %(idempotency_key)s, %(hash)s, now() + make_interval(mins => %(valid)s) "
                # FOR SHARE waits for an erasure in progress (lib/privacy.py locks the row) and then
                # sees its erased_at: no payment is taken for an account erased meanwhile.
                "FROM customers WHERE id = %(customer_id)s AND erased_at IS NULL FOR SHARE RETURNING *",
                {
                    "customer_id": customer_id,
                    "mode": body["mode"],
                    "tier_id": price.tier["id"],
                    "minutes": price.tier["minutes"],
                    "price": price.price,
                    "discount": price.discount,
                    "amount": price.amount,
                    "topic": body.get("topic_sensitivity"),
                    "target": targeted,
                    "idempotency_key": idempotency_key,
                    "hash": digest,
                    "valid": minutes_valid,
                },
            ).fetchone()
    except IdempotencyKeyTaken:  # a concurrent duplicate inserted first: answer as it did
        assert idempotency_key is not None
        replay = _replay(db, customer_id, idempotency_key, digest)
        if replay is not None:
            return replay
        raise
    # (another open request of the customer is ALREADY_ACTIVE: payment_requests_one_open)
    if row is None:
        raise Unauthorized("Account not found")  # erased while this request was on its way
    return request_doc(open_invoice(db, gateway, row, f"Sesi curhat {row['minutes']} menit", minutes_valid))


def open_invoice(
    db: Database,
    gateway: Gateway,
    row: dict[str, Any],
    description: str,
    minutes_valid: int,
    *,
    forget_refused: bool = True,
) -> dict[str, Any]:
    """Create the Xendit invoice of a stored request and record it; the request row afterwards.

    Xendit answered with an error: the row is deleted (no invoice, no request; the caller may try
    again), unless `forget_refused` is False: then the caller removes it with whatever points at
    it, in one transaction (an extension's request, lib/chat/extensions.py). No answer at all:
    Xendit may hold an invoice, so the row is kept (a PAID callback will find it), the invoice is
    looked up by our id (never created twice), and GatewayError carries the request id when it
    cannot be found yet (the payment_recover job keeps looking).
    """
    request_id = str(row["id"])
    try:
        invoice = gateway.create_invoice(
            external_id=request_id, amount=row["amount"], description=description, duration_seconds=minutes_valid * 60
        )
    except InvoiceOutcomeUnknown:
        recovered = _lookup(gateway, request_id)
        if recovered is None:
            log.warning("payment %s: invoice outcome unknown; kept pending for the recovery job", request_id)
            raise GatewayError(
                "The payment provider did not answer in time; this request is kept and checked again",
                details={"payment_request_id": request_id},
            ) from None
        invoice = recovered
    except ApiError:
        if forget_refused:
            db.execute(
                "DELETE FROM payment_requests WHERE id = %(payment_request_id)s AND invoice_url IS NULL",
                {"payment_request_id": request_id},
            )
        raise
    attached = attach_invoice(db, request_id, invoice)
    if attached is None:  # the recovery job attached the same invoice a moment ago
        attached = db.fetch_one(
            "SELECT * FROM payment_requests WHERE id = %(payment_request_id)s", {"payment_request_id": request_id}
        )
    assert attached is not None
    return attached


def _lookup(gateway: Gateway, request_id: str) -> Invoice | None:
    try:
        return gateway.find_invoice(request_id)
    except ApiError as exc:
        log.warning("payment %s: invoice lookup failed: %s", request_id, exc.code)
        return None


def attach_invoice(db: Database, request_id: str, invoice: Invoice) -> dict[str, Any] | None:
    """Record the invoice of a request that has none yet (creation, or recovery after a timeout),
    with Xendit's own expiry of it (how long the reconciliation may have to poll it)."""
    return db.fetch_one(
        "UPDATE payment_requests SET xendit_invoice_id = %(invoice_id)s, invoice_url = %(invoice_url)s, "
        "invoice_expires_at = %(invoice_expires_at)s, updated_at = now() WHERE id = %(payment_request_id)s AND "
        "invoice_url IS NULL RETURNING *",
        {
            "invoice_id": invoice.id,
            "invoice_url": invoice.invoice_url,
            "invoice_expires_at": invoice.expires_at,
            "payment_request_id": request_id,
        },
    )


REQUEST_CHANGES = "payment_requests_changed"  # migrations/0013: every UPDATE or DELETE of a request, at commit


def kept_requests(changes: Changes, db: Database) -> Kept[dict[str, Any] | None]:
    """A payment request by id from memory (what the waiting screen polls until `session_id`
    appears), dropped on every change to its row; an id with no row is not kept."""
    return Kept(
        changes,
        REQUEST_CHANGES,
        lambda request_id: db.fetch_one(
            "SELECT * FROM payment_requests WHERE id = %(payment_request_id)s", {"payment_request_id": request_id}
        ),
        keep=lambda row: row is not None,
    )


def owned_doc(requests: Kept[dict[str, Any] | None], request_id: str, customer_id: str) -> dict[str, Any]:
    row = requests.get(request_id)
    if row is None or str(row["customer_id"]) != customer_id:
        raise NotFound()  # another customer's request looks exactly like a missing one
    return request_doc(row)


def get_owned(db: Database, request_id: str, customer_id: str) -> dict[str, Any]:
    row = db.fetch_one(
        "SELECT * FROM payment_requests WHERE id = %(payment_request_id)s AND customer_id = %(customer_id)s",
        {"payment_request_id": request_id, "customer_id": customer_id},
    )
    if row is None:
        raise NotFound()  # another customer's request looks exactly like a missing one
    return row


def abandon(db: Database, request_id: str, customer_id: str) -> dict[str, Any]:
    """pending -> abandoned, and its invoice queued for closing at Xendit in the same transaction
    (until then it could still be paid; money that comes anyway is settled, never refused)."""
    with db.connection() as conn:
        row = conn.execute(
            "UPDATE payment_requests SET status = 'abandoned', updated_at = now() "
            "WHERE id = %(payment_request_id)s AND customer_id = %(customer_id)s AND status = 'pending' RETURNING *",
            {"payment_request_id": request_id, "customer_id": customer_id},
        ).fetchone()
        if row is not None:
            queue(conn, row["id"], "abandoned")
    if row is None:
        current = get_owned(db, request_id, customer_id)
        raise Conflict(f"The request is {current['status']}, not pending", code="PAYMENT_NOT_PENDING")
    return request_doc(row)
