"""Control-center user records: creation (CLI, seed, admin API) and lookups."""

from __future__ import annotations

from typing import Any

import psycopg

from lib.auth.passwords import hash_password
from lib.auth.permissions import ROLES
from lib.db import Database
from lib.errors import Conflict, ValidationFailed


def create_cc_user(
    db: Database, *, email: str, password: str, role: str, display_name: str | None = None
) -> dict[str, Any]:
    email = email.strip().lower()
    if "@" not in email or email.startswith("@"):
        raise ValidationFailed({"email": ["Not a valid e-mail address."]})
    if role not in ROLES:
        raise ValidationFailed({"role": [f"Must be one of: {', '.join(ROLES)}."]})
    password_hash = hash_password(password)
    try:
        row = db.fetch_one(
            "INSERT INTO cc_users (email, display_name, role, password_hash) "
            "VALUES (%(email)s, %(name)s, %(role)s, %(hash)s) "
            "RETURNING id, email, display_name, role, is_active, created_at, updated_at",
            {
                "email": email,
                "name": display_name or email.split("@", 1)[0],
                "role": role,
                "hash": password_hash,
            },
        )
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict("A user with this e-mail exists", code="EMAIL_TAKEN") from exc
    assert row is not None
    return row


def any_admin_exists(db: Database) -> bool:
    return db.fetch_one("SELECT 1 FROM cc_users WHERE role = 'admin' LIMIT 1") is not None


def seed_admin(db: Database, email: str, password: str) -> dict[str, Any] | None:
    """The ADMIN_EMAIL / ADMIN_PASSWORD super admin, created once; an existing user is left alone."""
    if not email or not password:
        return None
    if db.fetch_one("SELECT 1 FROM cc_users WHERE email = %(e)s", {"e": email.strip().lower()}):
        return None
    try:
        return create_cc_user(db, email=email, password=password, role="admin", display_name="Admin")
    except Conflict:  # another replica seeded it first
        return None
