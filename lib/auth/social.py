"""Google and Apple ID tokens, verified against the providers' JWKS (cached, served stale while one
thread refreshes, one re-fetch on an unknown kid)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import jwt
import requests

from lib.errors import Forbidden, Unauthorized

log = logging.getLogger(__name__)

GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
APPLE_ISSUER = "https://appleid.apple.com"
JWKS_TTL_SECONDS = 3600
REFETCH_MIN_SECONDS = 30  # an unknown kid, or a failed refresh, re-fetches at most this often (no fetch storms)
STALE_MAX_SECONDS = 24 * 3600  # a provider unreachable this long: its old keys are no longer trusted


class IdTokenInvalid(Unauthorized):
    code, message = "ID_TOKEN_INVALID", "The identity token could not be verified"


class JwksCache:
    """One provider's signing keys, kept JWKS_TTL_SECONDS.

    Stale while revalidate: when the keys are due, one thread fetches; meanwhile every other
    verification keeps using the cached keys instead of waiting on, or also calling, the provider.
    A failed refresh keeps the old keys (for at most STALE_MAX_SECONDS) and is retried after
    REFETCH_MIN_SECONDS. An unknown kid (the provider rotated its keys) causes at most one fetch per
    REFETCH_MIN_SECONDS; verifications that need a fetch already in flight wait for its result.
    """

    def __init__(self, url: str, timeout: float = 3.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self._timeout = timeout
        self._clock = clock
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0  # the last successful fetch
        self._tried_at: float | None = None  # the last fetch started, successful or not
        self._refreshing = False
        self._changed = threading.Condition()

    def _fetch(self) -> dict[str, Any] | None:
        try:
            response = requests.get(self.url, timeout=self._timeout)
            response.raise_for_status()
            return {k["kid"]: k for k in response.json().get("keys", []) if "kid" in k}
        except (requests.RequestException, ValueError, TypeError, AttributeError, KeyError) as exc:
            log.warning("JWKS fetch from %s failed: %s", self.url, type(exc).__name__)
            return None

    def _jwk(self, kid: str) -> Any:
        with self._changed:
            now = self._clock()
            known = kid in self._keys
            if known and now - self._fetched_at <= JWKS_TTL_SECONDS:
                return self._keys[kid]
            if self._refreshing:
                if known:
                    return self._keys[kid]  # stale: another thread is refreshing
                # No keys yet, or an unknown kid: the fetch in flight may bring it.
                self._changed.wait_for(lambda: not self._refreshing, timeout=2 * self._timeout + 1)
                return self._available(kid)
            if self._tried_at is not None and now - self._tried_at < REFETCH_MIN_SECONDS and self._keys:
                return self._available(kid)  # fetched (or tried) a moment ago: no fetch storms
            self._refreshing, self._tried_at = True, now
        keys = None
        try:
            keys = self._fetch()
        finally:
            with self._changed:
                if keys is not None:
                    self._keys, self._fetched_at = keys, self._clock()
                self._refreshing = False
                self._changed.notify_all()
        with self._changed:
            return self._available(kid)

    def _available(self, kid: str) -> Any:
        """The cached key (caller holds the lock); keys too old to trust any more are dropped."""
        if self._keys and self._clock() - self._fetched_at > STALE_MAX_SECONDS:
            self._keys = {}
        if not self._keys:
            raise IdTokenInvalid("Identity provider keys unavailable")
        return self._keys.get(kid)

    def key(self, kid: str) -> Any:
        jwk = self._jwk(kid)
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
