"""Fixed-window rate limits shared through Valkey, with a per-process fallback when it is down.

Fallback choice (SECURITY.md item 25): the same limits are counted per process, so during a Valkey
outage an attacker gets at most limit x processes tries per window, never unlimited, and real
users are not locked out by an infrastructure fault.
"""

from __future__ import annotations

import hashlib
import threading
import time

import redis

from lib.errors import RateLimited
from lib.metrics import m
from lib.valkey import VALKEY_ERRORS, valkey_failed


class RateLimiter:
    def __init__(self, valkey: redis.Redis) -> None:
        self._valkey = valkey
        self._local: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def hit(
        self,
        name: str,
        ident: str,
        limit: int,
        window_seconds: int,
        *,
        code: str = "RATE_LIMITED",
        message: str = "Too many requests",
    ) -> None:
        """Count one event; raise RateLimited (429 + Retry-After) once `limit` is exceeded."""
        now = time.time()
        window_start = int(now // window_seconds) * window_seconds
        digest = hashlib.sha256(ident.encode()).hexdigest()[:24]  # no phone numbers or IPs in keys
        key = f"rl:{name}:{digest}:{window_start}"
        try:
            pipe = self._valkey.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, window_seconds + 5, nx=True)
            count = int(pipe.execute()[0])
        except VALKEY_ERRORS:
            valkey_failed("ratelimit")
            count = self._local_hit(key, window_start + window_seconds)
        if count > limit:
            m().rate_limited.labels(name).inc()
            raise RateLimited(message, code=code, retry_after=int(window_start + window_seconds - now) + 1)

    def _local_hit(self, key: str, expires: float) -> int:
        with self._lock:
            now = time.time()
            if len(self._local) > 10_000:
                self._local = {k: v for k, v in self._local.items() if v[0] > now}
            _, count = self._local.get(key, (expires, 0))
            self._local[key] = (expires, count + 1)
            return count + 1
