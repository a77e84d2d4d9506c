"""Sign-in building blocks shared by every entry point: token pairs, sessions, refresh."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lib.auth.accounts import load_account, require_usable
from lib.auth.revocation import RevocationList
from lib.auth.sessions import RefreshChain, ReuseDetected, SessionGrant, record_security_event, rotate, start_session
from lib.auth.tokens import issue_access_token
from lib.config.env import Settings
from lib.db import Conn, Database

APP_USER_TYPES = ("customer", "mitra")
CC_USER_TYPES = ("cc_user",)


def access_for(settings: Settings, grant: SessionGrant, role: str | None = None) -> dict[str, Any]:
    token, expires = issue_access_token(
        settings.auth_jwt_secret,
        user_type=grant.user_type,
        user_id=grant.user_id,
        session_id=grant.session_id,
        ttl_seconds=settings.access_token_ttl_seconds,
        role=role,
    )
    return {
        "access_token": token,
        "access_token_expires_at": datetime.fromtimestamp(expires, UTC),
        "token_type": "Bearer",
        "user_type": grant.user_type,
    }


def token_pair(
    settings: Settings, grant: SessionGrant, user: dict[str, Any], role: str | None = None
) -> dict[str, Any]:
    """The token-pair response of API.md (login, OTP verify, social, anonymous, refresh)."""
    return {
        **access_for(settings, grant, role),
        "refresh_token": grant.refresh_token,
        "refresh_token_expires_at": grant.refresh_expires_at,
        "user": user,
    }


def sign_in(conn: Conn, settings: Settings, user_type: str, user_id: str) -> SessionGrant:
    return start_session(conn, user_type=user_type, user_id=user_id, ttl_days=settings.refresh_token_ttl_days)


def refresh(
    db: Database,
    chain: RefreshChain,
    revocations: RevocationList,
    token: str,
    client_ip: str,
    user_types: tuple[str, ...],
) -> tuple[SessionGrant, dict[str, Any]]:
    """Rotate a refresh token and re-check the account. Reuse revokes the whole session."""
    try:
        grant = rotate(db, chain, token, user_types)
    except ReuseDetected as reuse:
        revocations.revoke_sessions([reuse.session_id], reason="refresh_token_reuse")
        record_security_event(
            db,
            "refresh_token_reuse",
            user_type=reuse.user_type,
            user_id=reuse.user_id,
            session_id=reuse.session_id,
            client_ip=client_ip,
            details={"presented_generation": reuse.generation, "current_generation": reuse.current},
        )
        raise
    with db.connection() as conn:
        account = require_usable(grant.user_type, load_account(conn, grant.user_type, grant.user_id))
    return grant, account
