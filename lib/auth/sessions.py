"""Refresh sessions: opaque rotating refresh tokens, settled atomically in PostgreSQL.

A refresh token is `<selector>.<verifier>` (128 + 256 random bits). Every token of a session's
chain is kept as a row (selector -> bcrypt(verifier)), so a replayed ancestor is recognised.
The successor of a token is derived from the token itself with an HMAC keyed by the server
secret: concurrent refreshes and a lost-response retry all compute the SAME successor, while only
the first caller's conditional UPDATE creates it. Nothing about a token is stored in clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import bcrypt
from psycopg.types.json import Jsonb

from lib.db import Conn, Database
from lib.errors import Unauthorized

log = logging.getLogger("security")

GRACE_SECONDS = 10
# The verifier is 256 random bits: no brute force reaches it, so bcrypt's work factor buys
# nothing and cost 4 keeps a refresh at ~1 ms. The hash only keeps a database leak from
# yielding usable tokens.
REFRESH_HASH_COST = 4
_TOKEN = re.compile(r"^([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _hash(verifier: str) -> str:
    return bcrypt.hashpw(verifier.encode(), bcrypt.gensalt(REFRESH_HASH_COST)).decode()


class RefreshInvalid(Unauthorized):
    code, message = "REFRESH_INVALID", "Refresh token is invalid or expired"


@dataclass(frozen=True)
class SessionGrant:
    session_id: str
    user_type: str
    user_id: str
    refresh_token: str
    refresh_expires_at: datetime


class RefreshChain:
    """Derives successors; keyed by a sub-key of AUTH_JWT_SECRET."""

    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode(), b"halobestie refresh chain v1", hashlib.sha256).digest()

    def successor(self, token: str) -> tuple[str, str]:
        selector = _b64(hmac.new(self._key, b"sel:" + token.encode(), hashlib.sha256).digest()[:16])
        verifier = _b64(hmac.new(self._key, b"ver:" + token.encode(), hashlib.sha256).digest())
        return selector, verifier


def start_session(conn: Conn, *, user_type: str, user_id: str, ttl_days: int) -> SessionGrant:
    """A new session with its generation-0 refresh token; run inside the caller's transaction."""
    row = conn.execute(
        "INSERT INTO auth_sessions (user_type, user_id, expires_at) "
        "VALUES (%(user_type)s, %(user_id)s, now() + make_interval(days => %(ttl_days)s)) RETURNING id, expires_at",
        {"user_type": user_type, "user_id": user_id, "ttl_days": ttl_days},
    ).fetchone()
    assert row is not None
    selector, verifier = _b64(secrets.token_bytes(16)), _b64(secrets.token_bytes(32))
    conn.execute(
        "INSERT INTO auth_refresh_tokens (selector, session_id, generation, token_hash) "
        "VALUES (%(selector)s, %(session_id)s, 0, %(token_hash)s)",
        {"selector": selector, "session_id": row["id"], "token_hash": _hash(verifier)},
    )
    return SessionGrant(str(row["id"]), user_type, str(user_id), f"{selector}.{verifier}", row["expires_at"])


_LOOKUP = """
SELECT t.session_id, t.generation, t.token_hash, s.user_type, s.user_id, s.current_generation,
       s.expires_at, s.revoked_at, s.last_rotated_at, now() AS now
FROM auth_refresh_tokens t JOIN auth_sessions s ON s.id = t.session_id
WHERE t.selector = %(selector)s
"""

# One statement: the generation check, the bump and the successor row commit together or not at
# all. Concurrent callers queue on the session row; all but the first see the new generation.
_ROTATE = """
WITH rotated AS (
    UPDATE auth_sessions
    SET current_generation = current_generation + 1, last_rotated_at = now()
    WHERE id = %(session_id)s AND current_generation = %(generation)s AND revoked_at IS NULL AND expires_at > now()
    RETURNING id, current_generation
)
INSERT INTO auth_refresh_tokens (selector, session_id, generation, token_hash)
SELECT %(selector)s, id, current_generation, %(token_hash)s FROM rotated
RETURNING generation
"""

_REREAD = """
SELECT current_generation, last_rotated_at, revoked_at, expires_at, now() AS now
FROM auth_sessions WHERE id = %(session_id)s
"""


def rotate(db: Database, chain: RefreshChain, token: str, user_types: tuple[str, ...]) -> SessionGrant:
    """Exchange a refresh token for its successor.

    Raises RefreshInvalid for unknown, forged, revoked or expired tokens, and its subclass
    ReuseDetected for a replayed ancestor (the caller revokes the session and logs it).
    """
    match = _TOKEN.match(token or "")
    if not match:
        raise RefreshInvalid()
    selector, verifier = match.groups()
    row = db.fetch_one(_LOOKUP, {"selector": selector})
    if row is None or not bcrypt.checkpw(verifier.encode(), row["token_hash"].encode()):
        raise RefreshInvalid()
    if row["revoked_at"] is not None or row["expires_at"] <= row["now"]:
        raise RefreshInvalid()  # expiry is not reuse
    if row["user_type"] not in user_types:  # an app token on the CC route or the reverse
        raise RefreshInvalid()
    next_selector, next_verifier = chain.successor(token)
    session = dict(row)
    if row["generation"] == row["current_generation"]:
        with db.connection() as conn:
            created = conn.execute(
                _ROTATE,
                {
                    "session_id": row["session_id"],
                    "generation": row["generation"],
                    "selector": next_selector,
                    "token_hash": _hash(next_verifier),
                },
            ).fetchone()
            if created is None:
                session.update(conn.execute(_REREAD, {"session_id": row["session_id"]}).fetchone() or {})
        if created is not None:
            return _grant(row, next_selector, next_verifier)
    # The immediate predecessor, again, shortly after its rotation: the response was probably lost.
    within_grace = (session["now"] - session["last_rotated_at"]).total_seconds() <= GRACE_SECONDS
    if row["generation"] == session["current_generation"] - 1 and within_grace and session["revoked_at"] is None:
        return _grant(row, next_selector, next_verifier)
    raise ReuseDetected(
        str(row["session_id"]),
        row["user_type"],
        str(row["user_id"]),
        row["generation"],
        session["current_generation"],
    )


def _grant(row: dict[str, Any], selector: str, verifier: str) -> SessionGrant:
    return SessionGrant(
        str(row["session_id"]),
        row["user_type"],
        str(row["user_id"]),
        f"{selector}.{verifier}",
        row["expires_at"],
    )


class ReuseDetected(RefreshInvalid):
    """An ancestor token (or the predecessor after the grace) came back: treat the chain as stolen."""

    def __init__(self, session_id: str, user_type: str, user_id: str, generation: int, current: int) -> None:
        super().__init__()
        self.session_id, self.user_type, self.user_id = session_id, user_type, user_id
        self.generation, self.current = generation, current


def record_security_event(
    db: Database,
    kind: str,
    *,
    user_type: str | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
    client_ip: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    log.warning(
        "[security] %s user_type=%s user_id=%s session_id=%s ip=%s",
        kind,
        user_type,
        user_id,
        session_id,
        client_ip,
        extra={"security_event": kind},
    )
    try:
        db.execute(
            "INSERT INTO security_events (kind, user_type, user_id, session_id, client_ip, details) "
            "VALUES (%(kind)s, %(user_type)s, %(user_id)s, %(session_id)s, %(client_ip)s, %(details)s)",
            {
                "kind": kind,
                "user_type": user_type,
                "user_id": user_id,
                "session_id": session_id,
                "client_ip": client_ip,
                "details": Jsonb(details or {}),
            },
        )
    except Exception:  # the log line above already carries the event
        log.exception("could not store security event %s", kind)
