"""Extensions (DOMAIN.md, "Session lifecycle"): the customer picks a tier and the chat pauses
(`extending`); the mitra approves or rejects within `extension_timeout_seconds`, else
`extension_default_action_on_timeout` decides. Money is asked only after approval: approval opens
an invoice (its own payment request, kind `extension`), payable until the time that was left runs
out (at most `payment_request_timeout_minutes`), and once it is paid the session resumes with the
minutes added to what was left. A rejection, a rejecting timeout or an unpaid invoice moves the
session to `closing` with the goodbye grace, as the apps expect; with the operator setting
`extension_refusal_resumes` it resumes instead with what was left (docs/chat.md). The race
between the mitra's answer and the timeout is settled by one conditional UPDATE.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import redis

from lib.chat.errors import SessionNotActive
from lib.chat.events import ChatEvents
from lib.chat.lifecycle import begin_closing, parties, resume
from lib.chat.outbox import Outbox, fire_due
from lib.chat.pairing import fail_payment
from lib.chat.sessions import for_participant
from lib.config.app import AppConfig
from lib.db import Conn, Database
from lib.errors import ApiError, Conflict, NotFound
from lib.payments.closures import expire_pending
from lib.payments.gateway import Gateway
from lib.payments.refunds import EXTENSION_NOT_APPLIED
from lib.payments.requests import open_invoice
from lib.presence.state import Seen, reachable, seen_in_valkey
from lib.pricing import quote
from lib.principal import Principal

log = logging.getLogger(__name__)


class ExtensionAlreadyDecided(Conflict):
    code, message = "EXTENSION_ALREADY_DECIDED", "This extension has already been decided"


def extension_doc(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "extension_id": row["id"],
        "session_id": row["session_id"],
        "tier_id": row["tier_id"],
        "duration_minutes": row["duration_minutes"],
        "price": row["price"],
        "status": row["status"],
        "requested_at": row["requested_at"],
        "expires_at": row["expires_at"],
        "timeout_seconds": max(0, int((row["expires_at"] - row["requested_at"]).total_seconds())),
        "decided_by": row["decided_by"],
        "payment_request_id": row["payment_request_id"],
        "invoice_url": row.get("invoice_url"),
        "pay_by": row["pay_by"],
    }


def pending_for(db: Database, session_id: str) -> dict[str, Any] | None:
    """The extension being decided or paid, for `info.pending_extension`."""
    row = db.fetch_one(
        "SELECT e.*, p.invoice_url FROM session_extensions e LEFT JOIN payment_requests p ON p.id = e.payment_request_id "
        "WHERE e.session_id = %(session_id)s AND e.status IN ('pending', 'approved')",
        {"session_id": session_id},
    )
    return extension_doc(row) if row else None


def _with_invoice(db: Database, extension_id: str) -> dict[str, Any]:
    row = db.fetch_one(
        "SELECT e.*, p.invoice_url FROM session_extensions e LEFT JOIN payment_requests p ON p.id = e.payment_request_id "
        "WHERE e.id = %(extension_id)s",
        {"extension_id": extension_id},
    )
    assert row is not None
    return row


def request_extension(
    db: Database, config: AppConfig, events: ChatEvents, who: Principal, session_id: str, tier_id: str
) -> dict[str, Any]:
    with db.connection() as conn:
        session = for_participant(conn, who, session_id, lock=True)
        if session["status"] == "extending":
            raise Conflict("An extension is already being decided", code="EXTENSION_PENDING")
        if session["status"] != "active":
            raise SessionNotActive()
        price = quote(conn, tier_id, who.user_id, mode=session["mode"], allow_discount=False)
        row = conn.execute(
            "INSERT INTO session_extensions (session_id, tier_id, duration_minutes, price, expires_at) "
            "VALUES (%(session_id)s, %(tier_id)s, %(duration_minutes)s, %(price)s, now() + make_interval(secs => %(timeout)s)) RETURNING *",
            {
                "session_id": session_id,
                "tier_id": price.tier["id"],
                "duration_minutes": price.tier["minutes"],
                "price": price.amount,
                "timeout": config.int("extension_timeout_seconds"),
            },
        ).fetchone()
        assert row is not None
        conn.execute(
            "UPDATE chat_sessions SET status = 'extending', paused_at = now(), updated_at = now() WHERE id = %(session_id)s",
            {"session_id": session_id},
        )
    doc = extension_doc(row)
    events.publish(parties(session), "extension.requested", doc)
    return doc


def respond(
    db: Database,
    valkey: redis.Redis,
    config: AppConfig,
    events: ChatEvents,
    gateway: Gateway,
    who: Principal,
    extension_id: str,
    approve: bool,
) -> dict[str, Any]:
    """The mitra's answer; the loser of a race with the timeout gets EXTENSION_ALREADY_DECIDED."""
    outbox = Outbox()
    with db.connection() as conn:
        owned = conn.execute(
            "SELECT e.id FROM session_extensions e JOIN chat_sessions s ON s.id = e.session_id "
            "WHERE e.id = %(extension_id)s AND s.mitra_id = %(mitra_id)s",
            {"extension_id": extension_id, "mitra_id": who.user_id},
        ).fetchone()
        if owned is None:
            raise NotFound()
        if _decide(conn, outbox, config, extension_id, approve, "mitra") is None:
            raise ExtensionAlreadyDecided()
    outbox.flush(db, valkey, events)
    if approve:
        issue_invoice(db, valkey, config, events, gateway, extension_id)
    return extension_doc(_with_invoice(db, extension_id))


def _came_to_nothing(conn: Conn, outbox: Outbox, config: AppConfig, session_id: str) -> None:
    """A refused, timed-out-and-rejected or unpaid extension: closing with the goodbye grace, or
    (operator setting) back to the chat with the time that was left."""
    if config.bool("extension_refusal_resumes"):
        resume(conn, outbox, session_id, 0)
    else:
        begin_closing(conn, outbox, session_id, "system")


def _decide(
    conn: Conn, outbox: Outbox, config: AppConfig, extension_id: str, approve: bool, by: str
) -> dict[str, Any] | None:
    row = conn.execute(
        "UPDATE session_extensions SET status = %(status)s, decided_by = %(decided_by)s, decided_at = now() "
        "WHERE id = %(extension_id)s AND status = 'pending' RETURNING *",
        {"extension_id": extension_id, "status": "approved" if approve else "rejected", "decided_by": by},
    ).fetchone()
    if row is None:
        return None
    session = conn.execute(
        "SELECT * FROM chat_sessions WHERE id = %(session_id)s", {"session_id": row["session_id"]}
    ).fetchone()
    assert session is not None
    if not approve:
        outbox.add(parties(session), "extension.resolved", extension_doc(row))
        _came_to_nothing(conn, outbox, config, str(row["session_id"]))
    return row


def issue_invoice(
    db: Database,
    valkey: redis.Redis,
    config: AppConfig,
    events: ChatEvents,
    gateway: Gateway,
    extension_id: str,
) -> None:
    """Open the payment request and invoice of an approved extension; safe to call twice (the
    first caller records the request, the unique index stops a second)."""
    minutes_valid = config.int("payment_request_timeout_minutes")
    with db.connection() as conn:
        ext = conn.execute(
            "SELECT e.*, s.customer_id, s.mode, GREATEST(s.expires_at - s.paused_at, interval '0') AS time_left "
            "FROM session_extensions e JOIN chat_sessions s ON s.id = e.session_id "
            "WHERE e.id = %(extension_id)s AND e.status = 'approved' AND e.payment_request_id IS NULL FOR UPDATE OF e SKIP LOCKED",
            {"extension_id": extension_id},
        ).fetchone()
        if ext is None:
            return
        if not config.bool("extension_refusal_resumes"):
            # The chat would have ended when its time ran out: the invoice is payable until then.
            minutes_valid = max(1, min(minutes_valid, math.ceil(ext["time_left"].total_seconds() / 60)))
        request = conn.execute(
            "INSERT INTO payment_requests (customer_id, kind, extension_id, session_id, mode, tier_id, minutes, price, "
            "amount, status, expires_at) VALUES (%(customer_id)s, 'extension', %(extension_id)s, %(session_id)s, "
            "%(mode)s, %(tier_id)s, %(minutes)s, %(price)s, "
            "%(price)s, 'pending', now() + make_interval(mins => %(valid)s)) RETURNING *",
            {
                "customer_id": ext["customer_id"],
                "extension_id": extension_id,
                "session_id": ext["session_id"],
                "mode": ext["mode"],
                "tier_id": ext["tier_id"],
                "minutes": ext["duration_minutes"],
                "price": ext["price"],
                "valid": minutes_valid,
            },
        ).fetchone()
        assert request is not None
        conn.execute(
            "UPDATE session_extensions SET payment_request_id = %(payment_request_id)s, pay_by = %(pay_by)s WHERE id = %(extension_id)s",
            {"payment_request_id": request["id"], "pay_by": request["expires_at"], "extension_id": extension_id},
        )
    outbox = Outbox()
    description = f"Tambahan waktu curhat {ext['duration_minutes']} menit"
    try:
        open_invoice(db, gateway, request, description, minutes_valid, forget_refused=False)
    except ApiError as exc:
        if not exc.details.get("payment_request_id"):  # Xendit refused: no invoice, so no extension
            log.warning("extension %s: invoice not created (%s); it comes to nothing", extension_id, exc.code)
            with db.connection() as conn:
                # Unlinked and removed together: the extension points at the request (a foreign key),
                # so removing the request alone failed and left it pending with no invoice.
                conn.execute(
                    "UPDATE session_extensions SET status = 'expired', payment_request_id = NULL WHERE id = %(extension_id)s",
                    {"extension_id": extension_id},
                )
                conn.execute(
                    "DELETE FROM payment_requests WHERE id = %(payment_request_id)s AND invoice_url IS NULL",
                    {"payment_request_id": request["id"]},
                )
                _came_to_nothing(conn, outbox, config, str(ext["session_id"]))
            outbox.flush(db, valkey, events)
        return  # an unknown outcome is recovered by the payment_recover job, or lapses at pay_by
    session = db.fetch_one("SELECT * FROM chat_sessions WHERE id = %(session_id)s", {"session_id": ext["session_id"]})
    assert session is not None
    events.publish(parties(session), "extension.resolved", extension_doc(_with_invoice(db, extension_id)))


def apply_payment(db: Database, valkey: redis.Redis, events: ChatEvents, payment_request_id: str) -> bool:
    """A confirmed extension payment: the minutes are added and the chat resumes. Paid after the
    extension had lapsed, the money is recorded for a manual refund. Idempotent."""
    outbox = Outbox()
    with db.connection() as conn:
        pay = conn.execute(
            "SELECT * FROM payment_requests WHERE id = %(payment_request_id)s FOR UPDATE",
            {"payment_request_id": payment_request_id},
        ).fetchone()
        if pay is None or pay["kind"] != "extension" or pay["status"] != "confirmed":
            return False
        ext = conn.execute(
            "UPDATE session_extensions SET status = 'paid', paid_at = now() WHERE id = %(extension_id)s AND status = 'approved' "
            "RETURNING *",
            {"extension_id": pay["extension_id"]},
        ).fetchone()
        if ext is None:
            fail_payment(conn, payment_request_id, str(pay["session_id"]), EXTENSION_NOT_APPLIED)
        else:
            conn.execute(
                "UPDATE payment_requests SET status = 'consumed', updated_at = now() WHERE id = %(payment_request_id)s",
                {"payment_request_id": payment_request_id},
            )
            resume(conn, outbox, str(ext["session_id"]), int(ext["duration_minutes"]))
    outbox.flush(db, valkey, events)
    return ext is not None


# --- deadlines (run by the worker) ---------------------------------------------------------------


def decide_due(db: Database, valkey: redis.Redis, config: AppConfig, events: ChatEvents, limit: int = 100) -> list[str]:
    """Extensions the mitra did not answer in time: the configured default decides. Approved ones
    are invoiced by the extension_invoices job, so no outside call runs inside the deadline tick."""
    approve = config.get("extension_default_action_on_timeout") == "auto_approve"
    decided: list[str] = []
    seen: dict[str, Seen] = {}

    def prepare(rows: list[dict[str, Any]]) -> None:
        # One Valkey round trip for the whole claim: a Valkey timeout costs the tick one timeout,
        # not one per due extension while their rows are locked.
        if approve:
            seen.update(seen_in_valkey(valkey, [str(r["mitra_id"]) for r in rows if r["mitra_id"] is not None]))

    def fire(conn: Conn, outbox: Outbox, row: dict[str, Any]) -> None:
        # The offline safeguard: a default of approving does not charge the customer for more
        # minutes with a listener who is gone (no socket, no recent heartbeat).
        mitra_id = None if row["mitra_id"] is None else str(row["mitra_id"])
        yes = approve and (mitra_id is None or reachable(conn, config, mitra_id, seen.get(mitra_id)))
        if _decide(conn, outbox, config, str(row["id"]), yes, "auto_approve" if yes else "auto_reject"):
            decided.append(str(row["id"]))
            if approve and not yes:
                log.info("extension %s auto-rejected: its mitra is not reachable", row["id"])

    claim = (
        "SELECT e.id, s.mitra_id, clock_timestamp() - e.expires_at AS lateness "
        "FROM session_extensions e JOIN chat_sessions s ON s.id = e.session_id "
        "WHERE e.status = 'pending' AND e.expires_at <= now() ORDER BY e.expires_at LIMIT %(limit)s "
        "FOR UPDATE OF e SKIP LOCKED"
    )
    fire_due(db, valkey, events, "extension_decision", claim, fire, limit, prepare=prepare)
    return decided


def lapse_unpaid(
    db: Database, valkey: redis.Redis, config: AppConfig, events: ChatEvents, limit: int = 100
) -> list[str]:
    """Approved extensions not paid by `pay_by`: the session closes (or resumes, by the setting), the
    request expires and its invoice is queued for closing at Xendit. One whose payment is confirmed
    (paid, its delivery on the way) is left to apply_payment."""

    def fire(conn: Conn, outbox: Outbox, row: dict[str, Any]) -> None:
        conn.execute(
            "UPDATE session_extensions SET status = 'expired' WHERE id = %(extension_id)s", {"extension_id": row["id"]}
        )
        if row["payment_request_id"] is not None:
            expire_pending(conn, row["payment_request_id"], "extension_lapsed")
        session = conn.execute(
            "SELECT * FROM chat_sessions WHERE id = %(session_id)s", {"session_id": row["session_id"]}
        ).fetchone()
        assert session is not None
        outbox.add(parties(session), "extension.resolved", {"extension_id": row["id"], "status": "expired"})
        _came_to_nothing(conn, outbox, config, str(row["session_id"]))

    claim = (
        "SELECT e.id, e.session_id, e.payment_request_id, clock_timestamp() - e.pay_by AS lateness "
        "FROM session_extensions e WHERE e.status = 'approved' AND e.pay_by <= now() "
        "AND NOT EXISTS (SELECT 1 FROM payment_requests p WHERE p.id = e.payment_request_id AND p.status = 'confirmed') "
        "ORDER BY e.pay_by LIMIT %(limit)s FOR UPDATE OF e SKIP LOCKED"
    )
    return [str(r["id"]) for r in fire_due(db, valkey, events, "extension_payment", claim, fire, limit)]


def unbilled(db: Database, limit: int = 50) -> list[str]:
    """Approved extensions still waiting for their invoice (the auto-approved ones)."""
    rows = db.fetch_all(
        "SELECT id FROM session_extensions WHERE status = 'approved' AND payment_request_id IS NULL "
        "ORDER BY decided_at LIMIT %(limit)s",
        {"limit": limit},
    )
    return [str(r["id"]) for r in rows]
