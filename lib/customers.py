"""Customer profile reads and edits, and the per-process profile cache behind GET /api/client/me."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from lib.auth.accounts import customer_doc
from lib.db import Database, contains
from lib.errors import NotFound, Unauthorized
from lib.kept import Changes, Kept
from lib.pagination import NEWEST

CHANGES = "customers_changed"  # migrations/0012, 0013: every UPDATE or DELETE of a customer row, at commit


def profile(db: Database, customer_id: str) -> dict[str, Any]:
    row = db.fetch_one("SELECT * FROM customers WHERE id = %(customer_id)s", {"customer_id": customer_id})
    if row is None:  # a token for a customer that no longer exists
        raise Unauthorized("Account not found")
    return customer_doc(row)


def kept_profiles(changes: Changes, db: Database) -> Kept[dict[str, Any]]:
    """`profile` from memory (GET /api/client/me), dropped on every change to the customer row."""
    return Kept(changes, CHANGES, lambda customer_id: profile(db, customer_id))


_SEARCH = sql.SQL(
    "SELECT * FROM customers WHERE (%(search)s::text IS NULL OR display_name ILIKE %(like)s "
    "OR email ILIKE %(like)s OR phone LIKE %(like)s) "
    "AND {after} ORDER BY {order} LIMIT %(limit)s"
).format(after=NEWEST.after(), order=NEWEST.order())


def search_customers(db: Database, q: str | None, position: dict[str, Any]) -> list[dict[str, Any]]:
    """Newest first; `q` matches the call name, the e-mail or the phone; `position` is NEWEST.params."""
    return db.fetch_all(_SEARCH, {"search": q, "like": contains(q), **position})


def customer_record(db: Database, customer_id: str) -> dict[str, Any]:
    row = db.fetch_one("SELECT * FROM customers WHERE id = %(customer_id)s", {"customer_id": customer_id})
    if row is None:
        raise NotFound()
    summary = db.fetch_one(
        "SELECT (SELECT count(*) FROM chat_sessions WHERE customer_id = %(customer_id)s AND started_at IS NOT NULL) AS sessions, "
        "(SELECT max(started_at) FROM chat_sessions WHERE customer_id = %(customer_id)s) AS last_session_at, "
        "(SELECT count(*) FROM payment_requests WHERE customer_id = %(customer_id)s AND status IN ('confirmed', 'consumed', "
        "'failed_pairing')) AS payments, "
        "(SELECT COALESCE(sum(COALESCE(paid_amount, amount)), 0) FROM payment_requests WHERE customer_id = %(customer_id)s "
        "AND confirmed_at IS NOT NULL) AS paid_total",
        {"customer_id": customer_id},
    )
    identities = db.fetch_all(
        "SELECT provider, email, created_at FROM customer_identities WHERE customer_id = %(customer_id)s ORDER BY created_at",
        {"customer_id": customer_id},
    )
    return {
        **customer_doc(row),
        "account_belongs_to": row["account_belongs_to"],
        "first_active_session_at": row["first_active_session_at"],
        "last_login_at": row["last_login_at"],
        "identities": identities,
        **(summary or {}),
    }
