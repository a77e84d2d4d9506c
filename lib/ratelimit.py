"""Sliding-window rate limits shared through Valkey, with a per-process fallback when it is down.

Each limited identity keeps the times of its counted events (a Valkey sorted set): a limit of N per
window means at most N in any `window` seconds, and Retry-After is exactly when the oldest of them
leaves it. Fixed clock-aligned windows let 2N through across a window's edge (N in its last second
and N in the next one's first: twice the Xendit invoices for payment requests), and a test that
straddled an edge saw no limit at all. The limits counted this way are small (tens per window by
default), so the sets are too. A refused event is not counted: hammering a refusal does not push
the next allowed event further away.

Times come from each process's clock (NTP keeps them within milliseconds; a host seconds off lets
that much more through). Settings cap every limit at 10,000 per window: a full set is ~1.3 MB.

Fallback choice (SECURITY.md item 25): the same limits are counted per process, so during a Valkey
outage an attacker gets at most limit x processes tries per window, never unlimited, and real
users are not locked out by an infrastructure fault. Each process keeps at most 50,000 such counts
(the least recently hit go first).
"""

from __future__ import annotations

import bisect
import hashlib
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import redis

from lib.errors import RateLimited
from lib.metrics import m
from lib.valkey import VALKEY_ERRORS, valkey_failed

# One step in Valkey: forget what left the window, then count this event only if it fits (so a
# refusal is never counted and two events never take the last place together), else answer the
# counted time that must leave for one more to fit.
_HIT = """
local key, now, window, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count < limit then
    redis.call('ZADD', key, now, ARGV[4])
    redis.call('EXPIRE', key, window + 5)
    return false
end
return redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')[2]
"""


class RateLimiter:
    def __init__(self, valkey: redis.Redis, clock: Callable[[], float] = time.time, local_keys: int = 50_000) -> None:
        self._valkey = valkey
        self._clock = clock  # wall time: the counted times are shared by every process
        self._script = valkey.register_script(_HIT)
        # The fallback's counts: key -> (when it no longer counts, the counted times oldest first),
        # least recently hit first, at most `local_keys` of them (the least recently hit go first:
        # an outage must not grow a process without bound, nor scan it all on every hit).
        self._local: OrderedDict[str, tuple[float, list[float]]] = OrderedDict()
        self._local_keys = local_keys
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
        """Count one event; raise RateLimited (429 + Retry-After) when it would be more than `limit`
        in the last `window_seconds`."""
        if limit < 1 or window_seconds < 1:
            raise ValueError(f"rate limit {name}: {limit} per {window_seconds} s")  # settings allow neither
        now = self._clock()
        # No phone numbers or IPs in keys; surrogatepass: no identity, however odd, makes this a 500.
        digest = hashlib.sha256(ident.encode("utf-8", "surrogatepass")).hexdigest()[:24]
        key = f"rl:{name}:{digest}"
        try:
            oldest_blocking = self._shared_hit(key, now, limit, window_seconds)
        except VALKEY_ERRORS:
            valkey_failed("ratelimit")
            oldest_blocking = self._local_hit(key, now, limit, window_seconds)
        if oldest_blocking is None:
            return
        m().rate_limited.labels(name).inc()
        wait = oldest_blocking + window_seconds - now
        raise RateLimited(message, code=code, retry_after=max(1, math.ceil(wait)))

    def _shared_hit(self, key: str, now: float, limit: int, window: int) -> float | None:
        """None when counted; else the counted time whose leaving the window lets one more in."""
        blocking = self._script(keys=[key], args=[repr(now), window, limit, f"{now!r}:{secrets.token_hex(4)}"])
        return None if blocking is None else float(blocking)

    def _local_hit(self, key: str, now: float, limit: int, window: int) -> float | None:
        with self._lock:
            _, times = self._local.pop(key, (0.0, []))
            del times[: bisect.bisect_right(times, now - window)]
            blocking = None
            if len(times) < limit:
                bisect.insort(times, now)
            else:
                blocking = times[len(times) - limit]
            self._local[key] = (times[-1] + window, times)  # now the most recently hit
            # Forget, from the least recently hit on, what no longer counts, and past the bound the
            # least recently hit. Each key keeps its own window: a minute's limit never clears an hour's.
            while self._local:
                oldest, (forget_after, _) = next(iter(self._local.items()))
                if forget_after > now and len(self._local) <= self._local_keys:
                    break
                del self._local[oldest]
            return blocking
