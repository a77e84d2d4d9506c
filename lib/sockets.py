"""Who has a live WebSocket, shared through Valkey so pushes go only where no socket would carry
the event. Each user has a sorted set `ws:<user_type>:<user_id>` of `<process>|<session or *>`
members scored by when they lapse: a gateway refreshes its members every REFRESH_SECONDS, so the
sockets of a replica that crashed are forgotten within TTL_SECONDS."""

from __future__ import annotations

import time
from collections.abc import Iterable

import redis

TTL_SECONDS = 30
REFRESH_SECONDS = 10
GENERAL = "*"  # a socket on the user's general channel (no session joined)


def key(user_type: str, user_id: str) -> str:
    return f"ws:{user_type}:{user_id}"


def member(process_id: str, session_id: str | None) -> str:
    return f"{process_id}|{session_id or GENERAL}"


# ZADD and EXPIRE for each (key, member) pair, and stale members dropped, in one command: a gateway
# with thousands of sockets refreshes them all without packing thousands of commands in Python
# (measured: 28-36 ms of the gateway's GIL per 1,000 sockets as a pipeline, which stalled its loop).
_ANNOUNCE = """
local lapse, now, ttl = ARGV[1], ARGV[2], ARGV[3]
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, lapse, ARGV[i + 3])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  redis.call('EXPIRE', key, ttl)
end
return #KEYS
"""
CHUNK = 500  # pairs per command, so one refresh never holds Valkey (or the GIL) for long


def announce(valkey: redis.Redis, entries: Iterable[tuple[str, str]]) -> None:
    """(key, member) pairs that are live now."""
    script = valkey.register_script(_ANNOUNCE)
    now = time.time()
    pairs = list(entries)
    for i in range(0, len(pairs), CHUNK):
        chunk = pairs[i : i + CHUNK]
        script(keys=[k for k, _ in chunk], args=[now + TTL_SECONDS, now, TTL_SECONDS * 2] + [m for _, m in chunk])


def forget(valkey: redis.Redis, user_key: str, socket: str) -> None:
    valkey.zrem(user_key, socket)


def forget_many(valkey: redis.Redis, entries: Iterable[tuple[str, str]]) -> None:
    """(key, member) pairs whose sockets are gone, in one round trip."""
    pipe = valkey.pipeline(transaction=False)
    for user_key, socket in entries:
        pipe.zrem(user_key, socket)
    pipe.execute()


def any_live(valkey: redis.Redis, user_type: str, user_id: str) -> bool:
    """Whether the user has a live socket on any gateway process."""
    return bool(valkey.zcount(key(user_type, user_id), time.time(), "+inf"))


def covered(valkey: redis.Redis, user_type: str, user_id: str, session_id: str | None) -> bool:
    """Whether a live socket of this user would carry an event of `session_id`: a general
    socket carries every event, a session socket that session's."""
    live = valkey.zrangebyscore(key(user_type, user_id), time.time(), "+inf")
    wanted = {GENERAL, session_id} if session_id else {GENERAL}
    return any(str(m).rsplit("|", 1)[-1] in wanted for m in live)
