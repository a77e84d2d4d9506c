"""Per-process services handed to handlers through ctx: settings, database pool, Valkey, bus,
app config, revocations, rate limits. Built once per process (after the fork); nothing connects
until first use."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import redis

from lib.auth.revocation import RevocationList
from lib.auth.sessions import RefreshChain
from lib.auth.social import JwksCache
from lib.auth.tokens import VerifiedTokens
from lib.bus import Bus
from lib.config.app import AppConfig
from lib.config.env import ConfigError, Settings
from lib.db import Database
from lib.ratelimit import RateLimiter
from lib.valkey import make_client

if TYPE_CHECKING:  # these modules build on Services, so they are imported where first used
    from lib.payments.events import PaymentEvents
    from lib.payments.gateway import Gateway
    from lib.presence import AvailabilityCache

T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Services:
    def __init__(self, settings: Settings, *, application_name: str = "halobestie") -> None:
        self.settings = settings
        self.application_name = application_name
        self._lock = threading.RLock()
        self._made: dict[str, Any] = {}
        self._closers: list[Callable[[], None]] = []

    def _once(self, name: str, make: Callable[[], T], close: Callable[[T], None] | None = None) -> T:
        made = self._made.get(name)
        if made is None:
            with self._lock:
                made = self._made.get(name)
                if made is None:
                    made = make()
                    self._made[name] = made
                    if close is not None:
                        self._closers.append(lambda m=made: close(m))  # type: ignore[misc]
        return made

    @property
    def db(self) -> Database:
        s = self.settings
        return self._once(
            "db",
            lambda: Database(
                s.require_database_url(),
                server_tz=s.server_tz,
                min_size=s.db_pool_min,
                max_size=s.db_pool_max,
                timeout=s.db_pool_timeout,
                application_name=self.application_name,
            ),
            Database.close,
        )

    def _redis_url(self) -> str:
        if not self.settings.redis_url:
            raise ConfigError("REDIS_URL is not set (make dev starts an embedded Valkey)")
        return self.settings.redis_url

    @property
    def valkey(self) -> redis.Redis:
        return self._once(
            "valkey", lambda: make_client(self._redis_url(), self.settings.valkey_timeout), redis.Redis.close
        )

    @property
    def bus(self) -> Bus:
        return self._once(
            "bus",
            lambda: Bus(self._redis_url(), self.valkey, connect_timeout=self.settings.valkey_timeout),
            Bus.close,
        )

    @property
    def config(self) -> AppConfig:
        return self._once("config", lambda: AppConfig(self.db, self.bus))

    @property
    def revocations(self) -> RevocationList:
        return self._once(
            "revocations",
            lambda: RevocationList(self.db, self.bus, ttl_seconds=self.settings.access_token_ttl_seconds),
            RevocationList.close,
        )

    @property
    def rate_limiter(self) -> RateLimiter:
        return self._once("rate_limiter", lambda: RateLimiter(self.valkey))

    @property
    def verified_tokens(self) -> VerifiedTokens:
        return self._once("verified_tokens", lambda: VerifiedTokens(self.settings.auth_jwt_secret))

    @property
    def google_jwks(self) -> JwksCache:
        return self._once("google_jwks", lambda: JwksCache(self.settings.google_jwks_url))

    @property
    def apple_jwks(self) -> JwksCache:
        return self._once("apple_jwks", lambda: JwksCache(self.settings.apple_jwks_url))

    @property
    def availability_cache(self) -> AvailabilityCache:
        from lib.presence import AvailabilityCache

        return self._once("availability_cache", AvailabilityCache)

    @property
    def payment_events(self) -> PaymentEvents:
        from lib.payments.events import PaymentEvents

        return self._once("payment_events", lambda: PaymentEvents(self.bus))

    @property
    def payment_gateway(self) -> Gateway:
        from lib.payments.gateway import make_gateway

        return self._once("payment_gateway", lambda: make_gateway(self.settings))

    @property
    def refresh_chain(self) -> RefreshChain:
        return self._once("refresh_chain", lambda: RefreshChain(self.settings.auth_jwt_secret))

    def close(self) -> None:
        with self._lock:
            closers, self._closers = self._closers, []
            self._made.clear()
        for close in reversed(closers):
            close()
