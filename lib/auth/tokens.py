"""Access tokens: HS256 JWTs with separate audiences for the apps and the control center."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt

from lib.errors import Unauthorized
from lib.principal import Principal

ISSUER = "halobestie"
APP_AUDIENCE = "halobestie-app"
CC_AUDIENCE = "halobestie-cc"
USER_TYPES = ("customer", "mitra", "cc_user")
_REQUIRED = ["exp", "iat", "sub", "iss", "aud", "user_type", "session_id"]
_FORBIDDEN_HEADERS = ("kid", "jku", "jwk", "x5u", "x5c", "crit")
LEEWAY_SECONDS = 1  # our own replicas issue these; allow only sub-second clock differences


def audience_for(user_type: str) -> str:
    return CC_AUDIENCE if user_type == "cc_user" else APP_AUDIENCE


def issue_access_token(
    secret: str,
    *,
    user_type: str,
    user_id: str,
    session_id: str,
    ttl_seconds: int,
    role: str | None = None,
    now: int | None = None,
) -> tuple[str, int]:
    """Returns (token, expires_at as a unix timestamp)."""
    issued = int(time.time()) if now is None else now
    claims: dict[str, Any] = {
        "sub": user_id,
        "user_type": user_type,
        "session_id": session_id,
        "iat": issued,
        "exp": issued + ttl_seconds,
        "iss": ISSUER,
        "aud": audience_for(user_type),
        "jti": uuid.uuid4().hex,
    }
    if role is not None:
        claims["role"] = role
    return jwt.encode(claims, secret, algorithm="HS256"), issued + ttl_seconds


def verify_access_token(token: str, secret: str, audience: str) -> Principal:
    """Verify signature, algorithm, audience, issuer and required claims; 401 on any doubt."""
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != "HS256" or any(h in header for h in _FORBIDDEN_HEADERS):
            raise Unauthorized("Invalid token")
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=audience,
            issuer=ISSUER,
            options={"require": _REQUIRED},
            leeway=LEEWAY_SECONDS,
        )
    except jwt.PyJWTError as exc:
        raise Unauthorized("Invalid or expired token") from exc
    user_type, sub, sid = claims.get("user_type"), claims.get("sub"), claims.get("session_id")
    if user_type not in USER_TYPES or audience_for(user_type) != audience:
        raise Unauthorized("Invalid token")
    if not isinstance(sub, str) or not isinstance(sid, str) or not sub or not sid:
        raise Unauthorized("Invalid token")
    role = claims.get("role")
    return Principal(
        user_type=user_type,
        user_id=sub,
        session_id=sid,
        role=role if isinstance(role, str) else None,
        expires_at=int(claims["exp"]),
    )


class VerifiedTokens:
    """Tokens already verified by this process: skips the HMAC and claim checks on repeat requests.

    Bounded (cleared when full), and an entry is used only while its token is unexpired; the
    revocation check runs on every request regardless, so a cached token is refused as soon as
    its session is revoked.
    """

    def __init__(self, secret: str, max_entries: int = 20_000) -> None:
        self._secret = secret
        self._max = max_entries
        self._entries: dict[tuple[str, str], Principal] = {}

    def verify(self, token: str, audience: str) -> Principal:
        key = (token, audience)
        principal = self._entries.get(key)
        if principal is not None and principal.expires_at + LEEWAY_SECONDS > time.time():
            return principal
        principal = verify_access_token(token, self._secret, audience)
        if len(self._entries) >= self._max:
            self._entries = {}
        self._entries[key] = principal
        return principal
