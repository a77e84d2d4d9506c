"""Control-center user records: creation (CLI, seed, admin API) and lookups."""

from __future__ import annotations

from typing import Any

import psycopg

from lib.auth.passwords import hash_password, verify_password
from lib.auth.permissions import ROLES
from lib.auth.sessions import record_security_event
from lib.db import Database
from lib.errors import Conflict, Forbidden, Locked, Unauthorized, ValidationFailed
from lib.services import Services


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


def authenticate(services: Services, email: str, password: str, client_ip: str) -> dict[str, Any]:
    """Check a control-center login; counts failures, locks the account past the threshold."""
    cfg = services.config
    services.rate_limiter.hit(
        "cc-login",
        client_ip,
        cfg.int("cc_login_attempts_per_ip_per_hour"),
        3600,
        message="Too many login attempts from this network",
    )
    row = services.db.fetch_one(
        "SELECT *, now() AS now FROM cc_users WHERE email = %(e)s", {"e": email.strip().lower()}
    )
    if row is not None and row["locked_until"] is not None and row["locked_until"] > row["now"]:
        raise _locked(int((row["locked_until"] - row["now"]).total_seconds()) + 1)
    if not verify_password(password, row["password_hash"] if row else None) or row is None:
        if row is not None:
            _count_failure(services, row, client_ip)
        raise Unauthorized("Wrong e-mail or password", code="INVALID_CREDENTIALS")
    if not row["is_active"]:
        raise Forbidden("This account is disabled", code="ACCOUNT_INACTIVE")
    services.db.execute(
        "UPDATE cc_users SET failed_login_count = 0, locked_until = NULL WHERE id = %(id)s", {"id": row["id"]}
    )
    return row


def _locked(retry_after: int) -> Locked:
    return Locked(
        "Too many failed logins; try again later",
        code="ACCOUNT_LOCKED",
        details={"retry_after_seconds": retry_after},
        headers={"Retry-After": str(retry_after)},
    )


def _count_failure(services: Services, row: dict[str, Any], client_ip: str) -> None:
    cfg = services.config
    updated = services.db.fetch_one(
        "UPDATE cc_users SET failed_login_count = failed_login_count + 1, "
        "locked_until = CASE WHEN failed_login_count + 1 >= %(n)s "
        "THEN now() + make_interval(mins => %(m)s) ELSE locked_until END "
        "WHERE id = %(id)s RETURNING failed_login_count, locked_until",
        {"id": row["id"], "n": cfg.int("cc_lockout_threshold"), "m": cfg.int("cc_lockout_minutes")},
    )
    if updated and updated["failed_login_count"] == cfg.int("cc_lockout_threshold"):
        record_security_event(
            services.db, "cc_account_locked", user_type="cc_user", user_id=str(row["id"]), client_ip=client_ip
        )
