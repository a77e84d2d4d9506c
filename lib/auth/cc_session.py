"""Control-center sessions: the refresh token lives in an HttpOnly cookie scoped to /internal/auth."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import falcon

from lib.auth.flows import access_for
from lib.auth.sessions import SessionGrant
from lib.config.env import Settings
from lib.errors import Forbidden

COOKIE = "cc_refresh_token"
COOKIE_PATH = "/internal/auth"


def refresh_cookie(grant: SessionGrant) -> dict[str, Any]:
    max_age = int((grant.refresh_expires_at - datetime.now(UTC)).total_seconds())
    return {
        "name": COOKIE,
        "value": grant.refresh_token,
        "max_age": max(0, max_age),
        "path": COOKIE_PATH,
        "secure": True,
        "http_only": True,
        "same_site": "Strict",
    }


def clear_cookie() -> dict[str, Any]:
    return {"name": COOKIE, "unset": True, "path": COOKIE_PATH}


def cc_token_response(settings: Settings, grant: SessionGrant, user: dict[str, Any]) -> dict[str, Any]:
    """Like the app token pair, minus the refresh token (it travels only in the cookie)."""
    return {
        **access_for(settings, grant, user["role"]),
        "refresh_token_expires_at": grant.refresh_expires_at,
        "user": user,
    }


def check_origin(req: falcon.Request, allowed: tuple[str, ...]) -> None:
    """Cookie-authenticated calls must come from the control center's own origin (CSRF)."""
    origin = req.get_header("Origin")
    if not origin or origin not in allowed:
        raise Forbidden("Origin not allowed", code="ORIGIN_NOT_ALLOWED")
