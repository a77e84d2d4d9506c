"""Account documents for the three kinds of user, and the checks that gate sign-in and refresh."""

from __future__ import annotations

from typing import Any

from lib.auth.permissions import ROLE_PERMISSIONS
from lib.db import Conn
from lib.errors import Forbidden

CALL_NAME_FALLBACK = "Anonim"


def mask_phone(phone: str | None) -> str | None:
    if not phone:
        return None
    return phone[:6] + "*" * max(0, len(phone) - 9) + phone[-3:]


def customer_doc(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "display_name": row["display_name"],
        "call_name": row["display_name"] or CALL_NAME_FALLBACK,
        "is_anonymous": row["is_anonymous"],
        "phone": mask_phone(row["phone"]),
        "email": row["email"],
        "usp_seen": row["usp_seen_at"] is not None,
        "usp_seen_at": row["usp_seen_at"],
        "created_at": row["created_at"],
    }


def mitra_doc(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "phone": row["phone"],
        "display_name": row["display_name"],
        "is_active": row["is_active"],
        "is_online": bool(row.get("is_online", False)),
        "created_at": row["created_at"],
    }


def cc_user_doc(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "email": row["email"],
        "display_name": row["display_name"],
        "role": row["role"],
        "permissions": sorted(ROLE_PERMISSIONS.get(row["role"], ())),
        "is_active": row["is_active"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def load_account(conn: Conn, user_type: str, user_id: str) -> dict[str, Any] | None:
    """The account document, or None when it no longer exists."""
    if user_type == "customer":
        row = conn.execute("SELECT * FROM customers WHERE id = %(customer_id)s", {"customer_id": user_id}).fetchone()
        return customer_doc(row) if row else None
    if user_type == "mitra":
        row = conn.execute("SELECT * FROM mitras WHERE id = %(mitra_id)s", {"mitra_id": user_id}).fetchone()
        return mitra_doc(row) if row else None
    row = conn.execute("SELECT * FROM cc_users WHERE id = %(cc_user_id)s", {"cc_user_id": user_id}).fetchone()
    return cc_user_doc(row) if row else None


def require_usable(user_type: str, account: dict[str, Any] | None) -> dict[str, Any]:
    """Deactivated mitras and disabled control-center users cannot sign in or refresh."""
    if account is None:
        raise Forbidden("Account not found", code="ACCOUNT_NOT_FOUND")
    if user_type in ("mitra", "cc_user") and not account["is_active"]:
        raise Forbidden("Account is inactive", code="ACCOUNT_INACTIVE")
    return account
