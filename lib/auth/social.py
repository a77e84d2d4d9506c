"""Google and Apple ID tokens, verified against the providers' JWKS (cached, one re-fetch)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from typing import Any

import jwt
import requests

from lib.errors import Forbidden, Unauthorized

log = logging.getLogger(__name__)

GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
APPLE_ISSUER = "https://appleid.apple.com"
JWKS_TTL_SECONDS = 3600
REFETCH_MIN_SECONDS = 30  # an unknown kid re-fetches at most this often (no fetch storms)


class IdTokenInvalid(Unauthorized):
    code, message = "ID_TOKEN_INVALID", "The identity token could not be verified"


class JwksCache:
    def __init__(self, url: str, timeout: float = 3.0) -> None:
        self.url = url
        self._timeout = timeout
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0
        self._lock = threading.Lock()

    def _fetch(self) -> None:
        try:
            response = requests.get(self.url, timeout=self._timeout)
            response.raise_for_status()
            keys = {k["kid"]: k for k in response.json().get("keys", []) if "kid" in k}
        except (requests.RequestException, ValueError, TypeError, AttributeError) as exc:
            log.warning("JWKS fetch from %s failed: %s", self.url, type(exc).__name__)
            raise IdTokenInvalid("Identity provider keys unavailable") from exc
        self._keys, self._fetched_at = keys, time.monotonic()

    def key(self, kid: str) -> Any:
        with self._lock:
            age = time.monotonic() - self._fetched_at
            if not self._keys or age > JWKS_TTL_SECONDS:
                self._fetch()
            elif kid not in self._keys and age > REFETCH_MIN_SECONDS:
                self._fetch()  # the provider rotated its keys: one re-fetch
            jwk = self._keys.get(kid)
        if jwk is None:
            raise IdTokenInvalid()
        try:
            return jwt.PyJWK(jwk).key
        except jwt.PyJWTError as exc:
            raise IdTokenInvalid() from exc


def _verify(token: str, jwks: JwksCache, audiences: tuple[str, ...], issuers: tuple[str, ...]) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise IdTokenInvalid() from exc
    if header.get("alg") != "RS256" or not isinstance(header.get("kid"), str):
        raise IdTokenInvalid()
    key = jwks.key(header["kid"])
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            audience=list(audiences),
            issuer=list(issuers),
            options={"require": ["iss", "aud", "exp", "iat", "sub"]},
            leeway=30,
        )
    except jwt.PyJWTError as exc:
        raise IdTokenInvalid() from exc
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise IdTokenInvalid()
    return claims


def _require_enabled(client_ids: tuple[str, ...], provider: str) -> None:
    if not client_ids:
        raise Forbidden(f"{provider} sign-in is not enabled", code="PROVIDER_DISABLED")


def verified_email(claims: dict[str, Any]) -> str | None:
    """Only an address the provider says it verified is ever used."""
    verified = claims.get("email_verified")
    if verified is True or verified == "true":
        email = claims.get("email")
        return email.lower() if isinstance(email, str) else None
    return None


def verify_google(token: str, jwks: JwksCache, client_ids: tuple[str, ...]) -> dict[str, Any]:
    _require_enabled(client_ids, "Google")
    return _verify(token, jwks, client_ids, GOOGLE_ISSUERS)


def verify_apple(token: str, nonce: str, jwks: JwksCache, client_ids: tuple[str, ...]) -> dict[str, Any]:
    """Apple: RS256 only, and the token's nonce claim is the hex SHA-256 of the raw nonce sent."""
    _require_enabled(client_ids, "Apple")
    claims = _verify(token, jwks, client_ids, (APPLE_ISSUER,))
    expected = hashlib.sha256(nonce.encode()).hexdigest()
    if not isinstance(claims.get("nonce"), str) or not hmac.compare_digest(claims["nonce"], expected):
        raise IdTokenInvalid("Nonce mismatch")
    return claims
