"""Sign-in building blocks shared by every entry point: token pairs, refresh, logout, revocation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lib.auth.accounts import load_account, require_usable
from lib.auth.sessions import ReuseDetected, SessionGrant, record_security_event, rotate, start_session
from lib.auth.tokens import issue_access_token
from lib.db import Conn
from lib.services import Services


def access_for(services: Services, grant: SessionGrant, role: str | None = None) -> dict[str, Any]:
    token, expires = issue_access_token(
        services.settings.auth_jwt_secret,
        user_type=grant.user_type,
        user_id=grant.user_id,
        session_id=grant.session_id,
        ttl_seconds=services.settings.access_token_ttl_seconds,
        role=role,
    )
    return {
        "access_token": token,
        "access_token_expires_at": datetime.fromtimestamp(expires, UTC),
        "token_type": "Bearer",
        "user_type": grant.user_type,
    }


def token_pair(
    services: Services, grant: SessionGrant, user: dict[str, Any], role: str | None = None
) -> dict[str, Any]:
    """The token-pair response of API.md (login, OTP verify, social, anonymous, refresh)."""
    return {
        **access_for(services, grant, role),
        "refresh_token": grant.refresh_token,
        "refresh_token_expires_at": grant.refresh_expires_at,
        "user": user,
    }


def sign_in(services: Services, conn: Conn, user_type: str, user_id: str) -> SessionGrant:
    return start_session(conn, user_type=user_type, user_id=user_id, ttl_days=services.settings.refresh_token_ttl_days)


APP_USER_TYPES = ("customer", "mitra")
CC_USER_TYPES = ("cc_user",)


def refresh(
    services: Services, token: str, client_ip: str, user_types: tuple[str, ...]
) -> tuple[SessionGrant, dict[str, Any]]:
    """Rotate a refresh token and re-check the account. Reuse revokes the whole session."""
    try:
        grant = rotate(services.db, services.refresh_chain, token, user_types)
    except ReuseDetected as reuse:
        revoke_sessions(services, session_ids=[reuse.session_id], reason="refresh_token_reuse")
        record_security_event(
            services.db,
            "refresh_token_reuse",
            user_type=reuse.user_type,
            user_id=reuse.user_id,
            session_id=reuse.session_id,
            client_ip=client_ip,
            details={"presented_generation": reuse.generation, "current_generation": reuse.current},
        )
        raise
    with services.db.connection() as conn:
        account = require_usable(grant.user_type, load_account(conn, grant.user_type, grant.user_id))
    return grant, account


def revoke_sessions(
    services: Services,
    *,
    reason: str,
    session_ids: list[str] | None = None,
    user: tuple[str, str] | None = None,
    keep: str | None = None,
) -> list[str]:
    """Revoke sessions in PostgreSQL first, then tell every process. Returns the ids revoked."""
    if session_ids is not None:
        rows = services.db.fetch_all(
            "UPDATE auth_sessions SET revoked_at = now(), revoked_reason = %(r)s "
            "WHERE id = ANY(%(ids)s::uuid[]) AND revoked_at IS NULL RETURNING id",
            {"ids": session_ids, "r": reason},
        )
    elif user is not None:
        rows = services.db.fetch_all(
            "UPDATE auth_sessions SET revoked_at = now(), revoked_reason = %(r)s "
            "WHERE user_type = %(t)s AND user_id = %(u)s AND revoked_at IS NULL "
            "AND id IS DISTINCT FROM %(keep)s::uuid RETURNING id",
            {"t": user[0], "u": user[1], "keep": keep, "r": reason},
        )
    else:
        raise ValueError("session_ids or user is required")
    revoked = [str(r["id"]) for r in rows]
    services.revocations.revoke(revoked)
    return revoked
