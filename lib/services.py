"""Per-process services handed to handlers through ctx: settings, database pool, Valkey client."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import redis

from lib.config.env import ConfigError, Settings
from lib.db import Database
from lib.valkey import make_client


def utcnow() -> datetime:
    return datetime.now(UTC)


class Services:
    """Built once per process (after the fork); nothing here connects until first use."""

    def __init__(self, settings: Settings, *, application_name: str = "halobestie") -> None:
        self.settings = settings
        self.application_name = application_name
        self._lock = threading.Lock()
        self._db: Database | None = None
        self._valkey: redis.Redis | None = None

    @property
    def db(self) -> Database:
        if self._db is None:
            with self._lock:
                if self._db is None:
                    s = self.settings
                    self._db = Database(
                        s.require_database_url(),
                        server_tz=s.server_tz,
                        min_size=s.db_pool_min,
                        max_size=s.db_pool_max,
                        timeout=s.db_pool_timeout,
                        application_name=self.application_name,
                    )
        return self._db

    @property
    def valkey(self) -> redis.Redis:
        if self._valkey is None:
            with self._lock:
                if self._valkey is None:
                    if not self.settings.redis_url:
                        raise ConfigError("REDIS_URL is not set (make dev starts an embedded Valkey)")
                    self._valkey = make_client(self.settings.redis_url, self.settings.valkey_timeout)
        return self._valkey

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            if self._valkey is not None:
                self._valkey.close()
                self._valkey = None
