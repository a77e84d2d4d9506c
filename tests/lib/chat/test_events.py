"""The one publisher: a frame per recipient on `user:<type>:<id>`, in the API.md shape."""

from __future__ import annotations

import json
from datetime import datetime

import redis

from lib.chat import events as ev
from lib.services import Services


def test_frames_reach_each_recipients_channel_once(services: Services) -> None:
    listener = redis.Redis.from_url(services.settings.redis_url, decode_responses=True)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call,unused-ignore]
    db = services.settings.redis_url.rsplit("/", 1)[1]
    pubsub.subscribe(f"db{db}:user:customer:c1", f"db{db}:user:mitra:m1")
    pubsub.get_message(timeout=1)
    pubsub.get_message(timeout=1)
    try:
        services.chat_events.publish(
            [ev.customer("c1"), ev.mitra("m1"), ev.customer("c1")], "session.closing", {"session_id": "s1"}
        )
        got = []
        for _ in range(3):
            message = pubsub.get_message(timeout=1)
            if message:
                got.append((message["channel"], json.loads(message["data"])))
    finally:
        pubsub.close()
        listener.close()
    assert sorted(c for c, _ in got) == [f"db{db}:user:customer:c1", f"db{db}:user:mitra:m1"]
    frame = got[0][1]
    assert set(frame) == {"type", "data", "at"}
    assert frame["type"] == "session.closing"
    assert frame["data"] == {"session_id": "s1"}
    assert frame["at"].endswith("Z")
    assert datetime.fromisoformat(frame["at"].replace("Z", "+00:00"))
