"""Control-center users and the rules on their accounts: creation (CLI, seed, admin API), login
with lockout, edits that may not lock the editor out, and password writes with the sessions each
one ends."""

from __future__ import annotations

from typing import Any

from lib.auth.passwords import hash_password, verify_password
from lib.auth.permissions import ROLES
from lib.auth.revocation import RevocationList
from lib.auth.sessions import record_security_event
from lib.config.app import AppConfig
from lib.constraints import EmailTaken
from lib.db import Database
from lib.errors import Conflict, Forbidden, Locked, NotFound, Unauthorized, ValidationFailed
from lib.principal import Principal
from lib.ratelimit import RateLimiter
from lib.requests_ip import network_of


def create_cc_user(
    db: Database, *, email: str, password: str, role: str, display_name: str | None = None
) -> dict[str, Any]:
    email = email.strip().lower()
    if "@" not in email or email.startswith("@"):
        raise ValidationFailed({"email": ["Not a valid e-mail address."]})
    if role not in ROLES:
        raise ValidationFailed({"role": [f"Must be one of: {', '.join(ROLES)}."]})
    password_hash = hash_password(password)
    row = db.fetch_one(
        "INSERT INTO cc_users (email, display_name, role, password_hash) "
        "VALUES (%(email)s, %(name)s, %(role)s, %(hash)s) "
        "RETURNING id, email, display_name, role, is_active, created_at, updated_at",
        {"email": email, "name": display_name or email.split("@", 1)[0], "role": role, "hash": password_hash},
    )  # a taken e-mail is EMAIL_TAKEN (lib/constraints.py)
    assert row is not None
    return row


def any_admin_exists(db: Database) -> bool:
    return db.fetch_one("SELECT 1 FROM cc_users WHERE role = 'admin' LIMIT 1") is not None


def seed_admin(db: Database, email: str, password: str) -> dict[str, Any] | None:
    """The ADMIN_EMAIL / ADMIN_PASSWORD super admin, created once; an existing user is left alone."""
    if not email or not password:
        return None
    if db.fetch_one("SELECT 1 FROM cc_users WHERE email = %(email)s", {"email": email.strip().lower()}):
        return None
    try:
        return create_cc_user(db, email=email, password=password, role="admin", display_name="Admin")
    except EmailTaken:  # another replica seeded it first
        return None


def authenticate(
    db: Database, config: AppConfig, limiter: RateLimiter, email: str, password: str, client_ip: str
) -> dict[str, Any]:
    """Check a control-center login; counts failures, locks the account past the threshold."""
    cfg = config
    limiter.hit(
        "cc-login",
        network_of(client_ip),
        cfg.int("cc_login_attempts_per_ip_per_hour"),
        3600,
        message="Too many login attempts from this network",
    )
    row = db.fetch_one("SELECT *, now() AS now FROM cc_users WHERE email = %(email)s", {"email": email.strip().lower()})
    if row is not None and row["locked_until"] is not None and row["locked_until"] > row["now"]:
        raise _locked(int((row["locked_until"] - row["now"]).total_seconds()) + 1)
    if not verify_password(password, row["password_hash"] if row else None) or row is None:
        if row is not None:
            _count_failure(db, config, row, client_ip)
        raise Unauthorized("Wrong e-mail or password", code="INVALID_CREDENTIALS")
    if not row["is_active"]:
        raise Forbidden("This account is disabled", code="ACCOUNT_INACTIVE")
    db.execute(
        "UPDATE cc_users SET failed_login_count = 0, locked_until = NULL WHERE id = %(cc_user_id)s",
        {"cc_user_id": row["id"]},
    )
    return row


def _locked(retry_after: int) -> Locked:
    return Locked(
        "Too many failed logins; try again later",
        code="ACCOUNT_LOCKED",
        details={"retry_after_seconds": retry_after},
        headers={"Retry-After": str(retry_after)},
    )


def _count_failure(db: Database, cfg: AppConfig, row: dict[str, Any], client_ip: str) -> None:
    updated = db.fetch_one(
        "UPDATE cc_users SET failed_login_count = failed_login_count + 1, "
        "locked_until = CASE WHEN failed_login_count + 1 >= %(lockout_threshold)s "
        "THEN now() + make_interval(mins => %(lockout_minutes)s) ELSE locked_until END "
        "WHERE id = %(cc_user_id)s RETURNING failed_login_count, locked_until",
        {
            "cc_user_id": row["id"],
            "lockout_threshold": cfg.int("cc_lockout_threshold"),
            "lockout_minutes": cfg.int("cc_lockout_minutes"),
        },
    )
    if updated and updated["failed_login_count"] == cfg.int("cc_lockout_threshold"):
        record_security_event(db, "cc_account_locked", user_type="cc_user", user_id=str(row["id"]), client_ip=client_ip)


def update_user(
    db: Database, revocations: RevocationList, actor: Principal, user_id: str, changes: dict[str, Any]
) -> dict[str, Any]:
    """Edit a user. Nobody may disable or demote themselves (the last admin could lock everyone
    out); a changed role or a disabled account ends the user's sessions, since tokens carry the role."""
    demoting = changes.get("is_active") is False or changes.get("role", "admin") != "admin"
    if user_id == actor.user_id and demoting:
        raise Conflict("You cannot disable or demote yourself", code="SELF_LOCKOUT")
    with db.connection() as conn:
        before = conn.execute(
            "SELECT * FROM cc_users WHERE id = %(cc_user_id)s FOR UPDATE", {"cc_user_id": user_id}
        ).fetchone()
        if before is None:
            raise NotFound()
        row = conn.execute(
            "UPDATE cc_users SET display_name = COALESCE(%(display_name)s, display_name), role = COALESCE(%(role)s, role), "
            "is_active = COALESCE(%(is_active)s, is_active), updated_at = now() WHERE id = %(cc_user_id)s RETURNING *",
            {
                "display_name": changes.get("display_name"),
                "role": changes.get("role"),
                "is_active": changes.get("is_active"),
                "cc_user_id": user_id,
            },
        ).fetchone()
    assert row is not None
    if row["role"] != before["role"] or (before["is_active"] and not row["is_active"]):
        revocations.revoke_user("cc_user", user_id, reason="admin_revocation")
    return row


PASSWORD_CHANGE_WINDOW_SECONDS = 15 * 60


def change_password(
    db: Database,
    revocations: RevocationList,
    limiter: RateLimiter,
    attempts: int,
    caller: Principal,
    current: str,
    new: str,
) -> None:
    """The caller's own change: the current password is required; every other session ends.

    At most `attempts` tries per user per 15 minutes, counted before the current password is
    checked: a stolen access token cannot be used to guess the password behind it."""
    limiter.hit(
        "cc-password-change",
        caller.user_id,
        attempts,
        PASSWORD_CHANGE_WINDOW_SECONDS,
        message="Too many password change attempts; try again later",
    )
    row = db.fetch_one("SELECT password_hash FROM cc_users WHERE id = %(cc_user_id)s", {"cc_user_id": caller.user_id})
    if row is None or not verify_password(current, row["password_hash"]):
        raise Unauthorized("Current password is wrong", code="INVALID_CREDENTIALS")
    _store_password(db, caller.user_id, hash_password(new, field="new_password"))
    revocations.revoke_user("cc_user", caller.user_id, reason="password_changed", keep=caller.session_id)


def reset_password(db: Database, revocations: RevocationList, user_id: str, new: str) -> None:
    """An admin sets a user's password: the lockout is lifted and every session of the user ends."""
    if not _store_password(db, user_id, hash_password(new)):
        raise NotFound()
    revocations.revoke_user("cc_user", user_id, reason="password_reset")


def _store_password(db: Database, user_id: str, password_hash: str) -> bool:
    return bool(
        db.execute(
            "UPDATE cc_users SET password_hash = %(password_hash)s, password_changed_at = now(), failed_login_count = 0, "
            "locked_until = NULL, updated_at = now() WHERE id = %(cc_user_id)s",
            {"password_hash": password_hash, "cc_user_id": user_id},
        )
    )
