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


def announce(valkey: redis.Redis, entries: Iterable[tuple[str, str]]) -> None:
    """(key, member) pairs that are live now: one pipeline for all of them."""
    lapse = time.time() + TTL_SECONDS
    pipe = valkey.pipeline(transaction=False)
    count = 0
    for user_key, socket in entries:
        pipe.zadd(user_key, {socket: lapse})
        pipe.expire(user_key, TTL_SECONDS * 2)
        count += 1
    if count:
        pipe.execute()


def forget(valkey: redis.Redis, user_key: str, socket: str) -> None:
    valkey.zrem(user_key, socket)


def covered(valkey: redis.Redis, user_type: str, user_id: str, session_id: str | None) -> bool:
    """Whether a live socket of this user would carry an event of `session_id`: a general
    socket carries every event, a session socket that session's."""
    live = valkey.zrangebyscore(key(user_type, user_id), time.time(), "+inf")
    wanted = {GENERAL, session_id} if session_id else {GENERAL}
    return any(str(m).rsplit("|", 1)[-1] in wanted for m in live)
