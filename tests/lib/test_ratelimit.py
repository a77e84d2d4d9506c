"""The shared rate limiter: at most `limit` events in any `window` seconds, across clock-aligned
windows' edges, in Valkey and in the per-process fallback, with a Retry-After neither early nor late."""

from __future__ import annotations

import threading
import uuid

import pytest
import redis

from lib.errors import RateLimited
from lib.ratelimit import RateLimiter

WINDOW = 60
EDGE = 1_800_000_000 // 3600 * 3600  # an hour's (and a minute's) start, far from today's keys


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["valkey", "fallback"])
def limiter(request: pytest.FixtureRequest, valkey_url: str):
    """A limiter on the shared Valkey, or on one nothing listens to (every call falls back)."""
    url = valkey_url if request.param == "valkey" else "redis://127.0.0.1:1/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    clock = Clock(EDGE - 1)  # the last second of a window
    yield RateLimiter(client, clock=clock), clock
    client.close()


def _allowed(limiter: RateLimiter, ident: str, limit: int) -> bool:
    try:
        limiter.hit("test", ident, limit, WINDOW)
    except RateLimited:
        return False
    return True


def test_the_limit_holds_across_a_windows_edge(limiter) -> None:
    rl, clock = limiter
    ident = str(uuid.uuid4())
    assert [_allowed(rl, ident, 3) for _ in range(4)] == [True, True, True, False]
    clock.now = EDGE + 1  # two seconds later, past the edge: still 3 in the last minute
    assert not _allowed(rl, ident, 3)
    clock.now = EDGE - 1 + WINDOW - 0.5
    assert not _allowed(rl, ident, 3)
    clock.now = EDGE - 1 + WINDOW  # a minute after the three: all three may come again
    assert [_allowed(rl, ident, 3) for _ in range(4)] == [True, True, True, False]


def test_refusals_are_not_counted(limiter) -> None:
    rl, clock = limiter
    ident = str(uuid.uuid4())
    assert _allowed(rl, ident, 2)
    clock.now += 30
    assert _allowed(rl, ident, 2)
    assert not any(_allowed(rl, ident, 2) for _ in range(20))
    clock.now += 30  # the first has left the minute: one place, whatever was refused meanwhile
    assert _allowed(rl, ident, 2)
    assert not _allowed(rl, ident, 2)


def test_identities_and_names_are_counted_apart(limiter) -> None:
    rl, _ = limiter
    one, other = str(uuid.uuid4()), str(uuid.uuid4())
    assert _allowed(rl, one, 1)
    assert not _allowed(rl, one, 1)
    assert _allowed(rl, other, 1)
    rl.hit("another-limit", one, 1, WINDOW)


@pytest.mark.parametrize(("limit", "spacing"), [(1, 0.0), (3, 10.0), (5, 7.5), (4, 0.3)])
def test_retry_after_is_neither_early_nor_late(limiter, limit: int, spacing: float) -> None:
    """`limit` events `spacing` seconds apart, then a refusal: one more fits exactly Retry-After
    (rounded up to a second) after the refusal, and not a second before."""
    rl, clock = limiter
    ident = str(uuid.uuid4())
    first = clock.now
    for _ in range(limit):
        assert _allowed(rl, ident, limit)
        clock.now += spacing
    with pytest.raises(RateLimited) as refused:
        rl.hit("test", ident, limit, WINDOW)
    wait = refused.value.details["retry_after_seconds"]
    assert wait == max(1, -int(-(first + WINDOW - clock.now) // 1))  # when the first leaves the minute
    refused_at = clock.now
    clock.now = refused_at + wait - 1.01
    assert not _allowed(rl, ident, limit)
    clock.now = refused_at + wait
    assert _allowed(rl, ident, limit)


def test_concurrent_events_never_pass_the_limit(valkey_url: str) -> None:
    """Twenty threads, each with its own connection, hit a limit of 5 at once: exactly 5 pass."""
    ident, passed, start = str(uuid.uuid4()), [], threading.Barrier(20)

    def one() -> None:
        client = redis.Redis.from_url(valkey_url)
        start.wait()
        passed.append(_allowed(RateLimiter(client), ident, 5))
        client.close()

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(passed) == 20
    assert passed.count(True) == 5


def _fallback(clock: Clock, local_keys: int) -> RateLimiter:
    return RateLimiter(redis.Redis.from_url("redis://127.0.0.1:1/0"), clock=clock, local_keys=local_keys)


def test_the_fallback_forgets_each_count_on_its_own_window() -> None:
    """While Valkey is away, a minute's limit that forgets its keys must not clear an hour's
    (a review found OTP-per-IP counts cleared by the minute-long webhook limit's cleanup)."""
    clock = Clock(EDGE)
    rl = _fallback(clock, local_keys=1_000)
    rl.hit("otp-ip", "10.0.0.1", 1, 3600)
    with pytest.raises(RateLimited):
        rl.hit("otp-ip", "10.0.0.1", 1, 3600)
    for n in range(200):
        rl.hit("webhook_refused", f"10.1.{n // 250}.{n % 250}", 30, 60)
    clock.now += 61
    rl.hit("webhook_refused", "10.2.0.1", 30, 60)
    with pytest.raises(RateLimited):
        rl.hit("otp-ip", "10.0.0.1", 1, 3600)


def test_the_fallback_holds_a_bounded_number_of_keys() -> None:
    clock = Clock(EDGE)
    rl = _fallback(clock, local_keys=100)
    for n in range(500):
        rl.hit("anonymous", f"10.3.{n // 250}.{n % 250}", 5, 3600)
    assert len(rl._local) == 100
    for _ in range(4):  # the most recent ones still count: this one has 1 of 5
        rl.hit("anonymous", "10.3.1.249", 5, 3600)
    with pytest.raises(RateLimited):
        rl.hit("anonymous", "10.3.1.249", 5, 3600)


@pytest.mark.parametrize(("limit", "window"), [(0, 60), (-1, 60), (5, 0)])
def test_a_limit_that_allows_nothing_is_a_programming_error(limit: int, window: int) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        _fallback(Clock(EDGE), 10).hit("test", "x", limit, window)


def test_an_odd_identity_is_counted_like_any_other(limiter) -> None:
    rl, _ = limiter
    for ident in ("\x00", "\ud800", "٣", "x" * 100_000):
        rl.hit("test", ident, 1, WINDOW)
        with pytest.raises(RateLimited):
            rl.hit("test", ident, 1, WINDOW)
