"""Customer identity resolution (DOMAIN.md, Actors): upgrade in place, belongs-to, login, create."""

from __future__ import annotations

from lib.db import Conn


def resolve_customer(
    conn: Conn,
    provider: str,
    subject: str,
    *,
    caller_id: str | None = None,
    phone: str | None = None,
    email: str | None = None,
) -> str:
    """The customer the verified identity signs in as. Runs inside the caller's transaction.

    1. caller is anonymous and the identity is new -> the caller's row is upgraded (same id);
    2. the identity belongs to someone else -> that customer; an anonymous caller's row records
       `account_belongs_to` (no 409);
    3. no caller and a known identity -> log in; 4. no caller, unknown identity -> new customer.
    """
    existing = _owner(conn, provider, subject)
    if caller_id is not None:
        caller = conn.execute(
            "SELECT id, is_anonymous FROM customers WHERE id = %(customer_id)s FOR UPDATE", {"customer_id": caller_id}
        ).fetchone()
        if caller is None:
            caller_id = None
        elif existing is None:
            if _attach(conn, str(caller["id"]), provider, subject, email):
                conn.execute(
                    "UPDATE customers SET is_anonymous = false, phone = COALESCE(phone, %(phone)s), "
                    "email = COALESCE(email, %(email)s), updated_at = now() WHERE id = %(customer_id)s",
                    {"customer_id": caller["id"], "phone": phone, "email": email},
                )
                return str(caller["id"])
            existing = _owner(conn, provider, subject)  # someone attached it a moment ago
        if caller is not None and existing is not None and existing != str(caller["id"]):
            if caller["is_anonymous"]:
                conn.execute(
                    "UPDATE customers SET account_belongs_to = %(owner_id)s, updated_at = now() WHERE id = %(customer_id)s",
                    {"owner_id": existing, "customer_id": caller["id"]},
                )
            return existing
        if caller is not None and existing is not None:
            return existing
    if existing is not None:
        return existing
    created = conn.execute(
        "INSERT INTO customers (is_anonymous, phone, email) VALUES (false, %(phone)s, %(email)s) RETURNING id",
        {"phone": phone, "email": email},
    ).fetchone()
    assert created is not None
    if _attach(conn, str(created["id"]), provider, subject, email):
        return str(created["id"])
    # Lost a race to create the same identity: drop our row and sign in as the winner.
    conn.execute("DELETE FROM customers WHERE id = %(customer_id)s", {"customer_id": created["id"]})
    winner = _owner(conn, provider, subject)
    assert winner is not None
    return winner


def _owner(conn: Conn, provider: str, subject: str) -> str | None:
    row = conn.execute(
        "SELECT customer_id FROM customer_identities WHERE provider = %(provider)s AND subject = %(subject)s",
        {"provider": provider, "subject": subject},
    ).fetchone()
    return str(row["customer_id"]) if row else None


def _attach(conn: Conn, customer_id: str, provider: str, subject: str, email: str | None) -> bool:
    """Give the identity to this customer; False when someone holds it already (a lost race)."""
    row = conn.execute(
        "INSERT INTO customer_identities (customer_id, provider, subject, email) "
        "VALUES (%(customer_id)s, %(provider)s, %(subject)s, %(email)s) ON CONFLICT (provider, subject) DO NOTHING RETURNING id",
        {"customer_id": customer_id, "provider": provider, "subject": subject, "email": email},
    ).fetchone()
    return row is not None
