"""Valkey (Redis protocol) client with sub-second timeouts and no retries: callers fall back instead."""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from lib.metrics import m

# Every Valkey failure a caller should treat as "Valkey is down, use the fallback".
VALKEY_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, OSError)


def make_client(url: str, timeout: float = 0.3) -> redis.Redis:
    """Connections are made on first command, so building the client before a fork is harmless."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=15,
        decode_responses=True,
        client_name="halobestie",
    )


def valkey_failed(component: str) -> None:
    """Count a Valkey failure that `component` answered with its fallback (PostgreSQL or local)."""
    m().valkey_errors.labels(component).inc()


def is_up(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except VALKEY_ERRORS:
        return False
