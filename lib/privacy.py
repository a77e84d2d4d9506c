"""The customer's rights under UU 27/2022 (PDP): a copy of everything we hold about them, and
erasure. An account's earlier anonymous accounts (`account_belongs_to`) count as the same person.

Erasure keeps what accounting must (payments, session metadata) against a pseudonymous customer
row; deletes identities, device tokens, refresh tokens, OTP requests for the phone and every
transcript of the customer's sessions (the Bestie's replies retell the customer's story); revokes
every auth session at once; redacts the raw bodies of the customer's payment webhooks (Xendit puts
the payer's e-mail there). A live chat or an open payment refuses the erasure first (409).
"""

from __future__ import annotations

from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from lib.auth.revocation import RevocationList
from lib.chat.states import OPEN, in_states
from lib.db import Conn, Database
from lib.errors import Conflict, NotFound
from lib.transcripts import Transcripts

REDACTED_BODY = b'{"redacted":"the customer\'s data was erased"}'


class EraseBlockedBySession(Conflict):
    code, message = "ERASE_BLOCKED_LIVE_SESSION", "End the chat in progress before deleting the account"


class EraseBlockedByPayment(Conflict):
    code, message = "ERASE_BLOCKED_OPEN_PAYMENT", "A payment is still open; wait for it to finish or expire"


def _person(conn: Conn, customer_id: str, lock: bool = False) -> tuple[dict[str, Any], list[str]]:
    """The customer row and the ids of every account of theirs."""
    query = (
        "SELECT * FROM customers WHERE id = %(customer_id)s FOR UPDATE"
        if lock
        else "SELECT * FROM customers WHERE id = %(customer_id)s"
    )
    row = conn.execute(query, {"customer_id": customer_id}).fetchone()
    if row is None:
        raise NotFound()
    linked = conn.execute(
        "SELECT id FROM customers WHERE account_belongs_to = %(customer_id)s", {"customer_id": customer_id}
    ).fetchall()
    return row, [customer_id, *(str(r["id"]) for r in linked)]


def _audit(
    conn: Conn, customer_id: str, action: str, actor: tuple[str, str], reason: str | None, **details: Any
) -> None:
    conn.execute(
        "INSERT INTO privacy_audit (customer_id, action, actor_type, actor_id, reason, details) "
        "VALUES (%(customer_id)s, %(action)s, %(actor_type)s, %(actor_id)s, %(reason)s, %(details)s)",
        {
            "customer_id": customer_id,
            "action": action,
            "actor_type": actor[0],
            "actor_id": actor[1],
            "reason": reason,
            "details": Jsonb(details),
        },
    )


def export(db: Database, transcripts: Transcripts, customer_id: str) -> dict[str, Any]:
    """Everything held about the customer, as one JSON document (no secrets: no token, no hash)."""
    with db.connection() as conn:
        row, ids = _person(conn, customer_id)
        q = {"customer_ids": ids}
        identities = conn.execute(
            "SELECT provider, subject, email, created_at FROM customer_identities WHERE customer_id = ANY(%(customer_ids)s) "
            "ORDER BY created_at",
            q,
        ).fetchall()
        devices = conn.execute(
            "SELECT platform, created_at, updated_at FROM device_tokens WHERE user_type = 'customer' "
            "AND user_id = ANY(%(customer_ids)s) ORDER BY created_at",
            q,
        ).fetchall()
        sessions = conn.execute(
            "SELECT id, status, mode, request_type, duration_minutes, topic_sensitivity, created_at, started_at, "
            "expires_at, completed_at, ended_by, transcript_purged_at FROM chat_sessions "
            "WHERE customer_id = ANY(%(customer_ids)s) ORDER BY created_at",
            q,
        ).fetchall()
        messages = conn.execute(
            "SELECT * FROM chat_messages WHERE sender_type = 'customer' AND sender_id = ANY(%(customer_ids)s) ORDER BY seq",
            q,
        ).fetchall()
        payments = conn.execute(
            "SELECT id, status, mode, minutes, price, discount, amount, currency, payment_method, payment_channel, "
            "created_at, confirmed_at, session_id FROM payment_requests WHERE customer_id = ANY(%(customer_ids)s) "
            "ORDER BY created_at",
            q,
        ).fetchall()
        _audit(conn, customer_id, "export", ("customer", customer_id), None)
    return {
        "profile": {
            "id": row["id"],
            "display_name": row["display_name"],
            "phone": row["phone"],
            "email": row["email"],
            "is_anonymous": row["is_anonymous"],
            "usp_seen_at": row["usp_seen_at"],
            "created_at": row["created_at"],
            "last_login_at": row["last_login_at"],
            "linked_accounts": ids[1:],
        },
        "identities": identities,
        "devices": devices,
        "sessions": sessions,
        "messages": [
            {
                "id": m["id"],
                "session_id": m["session_id"],
                "kind": m["kind"],
                "content": transcripts.open_row(m),
                "status": m["status"],
                "created_at": m["created_at"],
            }
            for m in messages
        ],
        "payments": payments,
    }


_LIVE = sql.SQL("SELECT 1 FROM chat_sessions WHERE customer_id = ANY(%(customer_ids)s) AND {open} LIMIT 1").format(
    open=in_states("status", OPEN)
)


def erase(
    db: Database, revocations: RevocationList, customer_id: str, actor: tuple[str, str], reason: str | None
) -> dict[str, Any]:
    """Erase the customer (idempotent: a second call changes nothing and says so)."""
    with db.connection() as conn:
        row, ids = _person(conn, customer_id, lock=True)
        if row["erased_at"] is not None:
            _audit(conn, customer_id, "erase", actor, reason, already_erased=True)
            return {"customer_id": customer_id, "erased_at": row["erased_at"], "already_erased": True}
        q = {"customer_ids": ids}
        if conn.execute(_LIVE, q).fetchone():
            raise EraseBlockedBySession()
        if conn.execute(
            "SELECT 1 FROM payment_requests WHERE customer_id = ANY(%(customer_ids)s) AND status IN ('pending', 'confirmed') LIMIT 1",
            q,
        ).fetchone():
            raise EraseBlockedByPayment()
        phones = [
            r["phone"]
            for r in conn.execute("SELECT phone FROM customers WHERE id = ANY(%(customer_ids)s)", q)
            if r["phone"]
        ]
        counts = {
            "identities": conn.execute(
                "DELETE FROM customer_identities WHERE customer_id = ANY(%(customer_ids)s)", q
            ).rowcount,
            "devices": conn.execute(
                "DELETE FROM device_tokens WHERE user_type = 'customer' AND user_id = ANY(%(customer_ids)s)", q
            ).rowcount,
            "messages": conn.execute(
                "DELETE FROM chat_messages WHERE session_id IN (SELECT id FROM chat_sessions WHERE customer_id = ANY(%(customer_ids)s))",
                q,
            ).rowcount,
            "otp_requests": conn.execute(
                "DELETE FROM otp_requests WHERE flow = 'customer' AND phone = ANY(%(phones)s)", {"phones": phones}
            ).rowcount,
            "refresh_tokens": conn.execute(
                "DELETE FROM auth_refresh_tokens WHERE session_id IN "
                "(SELECT id FROM auth_sessions WHERE user_type = 'customer' AND user_id = ANY(%(customer_ids)s))",
                q,
            ).rowcount,
            "webhook_bodies": conn.execute(
                "UPDATE webhook_logs SET raw_body = %(raw_body)s, body_sha256 = NULL WHERE payment_request_id IN "
                "(SELECT id FROM payment_requests WHERE customer_id = ANY(%(customer_ids)s))",
                {**q, "raw_body": REDACTED_BODY},
            ).rowcount,
        }
        revoked = conn.execute(
            "UPDATE auth_sessions SET revoked_at = now(), revoked_reason = 'account_erased' "
            "WHERE user_type = 'customer' AND user_id = ANY(%(customer_ids)s) AND revoked_at IS NULL RETURNING id",
            q,
        ).fetchall()
        conn.execute(
            "UPDATE chat_sessions SET transcript_purged_at = COALESCE(transcript_purged_at, now()) "
            "WHERE customer_id = ANY(%(customer_ids)s)",
            q,
        )
        erased = conn.execute(
            "UPDATE customers SET display_name = NULL, phone = NULL, email = NULL, is_anonymous = true, "
            "account_belongs_to = NULL, usp_seen_at = NULL, last_login_at = NULL, erased_at = now(), "
            "updated_at = now() WHERE id = ANY(%(customer_ids)s) RETURNING id, erased_at",
            q,
        ).fetchall()
        _audit(conn, customer_id, "erase", actor, reason, **counts, accounts=len(ids))
    # Committed, sessions revoked with it: tell every process now (their poll would find it too).
    revocations.announce([str(r["id"]) for r in revoked])
    erased_at = next(r["erased_at"] for r in erased if str(r["id"]) == customer_id)
    return {"customer_id": customer_id, "erased_at": erased_at, "already_erased": False}
