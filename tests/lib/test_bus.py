"""The bus: fan-out across processes, namespaced by the Valkey database number."""

from __future__ import annotations

import threading
import time

import redis

from lib.bus import Bus
from lib.valkey import make_client


def _bus(url: str) -> Bus:
    return Bus(url, make_client(url))


def test_a_message_reaches_a_bus_on_the_same_database_only(valkey_url: str) -> None:
    base = valkey_url.rsplit("/", 1)[0]
    other_db = f"{base}/{13 if valkey_url.endswith('/14') else 14}"
    same, other, sender = _bus(valkey_url), _bus(other_db), _bus(valkey_url)
    heard: dict[str, list[str]] = {"same": [], "other": []}
    arrived = threading.Event()

    def on_same(message: str) -> None:
        heard["same"].append(message)
        arrived.set()

    try:
        same.subscribe("test:channel", on_same)
        other.subscribe("test:channel", heard["other"].append)
        assert same.wait_subscribed(3)
        assert other.wait_subscribed(3)
        assert sender.publish("test:channel", "hello")
        assert arrived.wait(3)
        assert heard == {"same": ["hello"], "other": []}
        raw = redis.Redis.from_url(valkey_url)
        assert raw.pubsub_numsub(f"db{valkey_url.rsplit('/', 1)[1]}:test:channel")[0][1] == 1
        raw.close()
    finally:
        for bus in (same, other, sender):
            bus.close()


def test_a_confirmation_hook_runs_once_valkey_confirms_or_at_once_after(valkey_url: str) -> None:
    """`when_confirmed` calls its hook from the subscriber thread when Valkey confirms the channel,
    and at once, in the caller's thread, for a channel already confirmed."""
    bus = _bus(valkey_url)
    first, later = threading.Event(), []
    try:
        bus.subscribe("test:confirm", lambda message: None)
        bus.when_confirmed("test:confirm", first.set)
        assert first.wait(3)
        bus.when_confirmed("test:confirm", lambda: later.append(threading.current_thread().name))
        assert later == [threading.current_thread().name]  # already confirmed: called here, now
    finally:
        bus.close()


def test_a_channel_left_and_joined_again_at_once_is_confirmed_again(valkey_url: str) -> None:
    """A user's last socket closes and a new one opens before the subscriber looks: the link never
    left the channel, so Valkey confirms nothing new; the new waiter is confirmed all the same, and
    messages still arrive (the gateway held such a socket's auth.ok for its whole 1-s timeout)."""
    bus, sender = _bus(valkey_url), _bus(valkey_url)
    first, again, heard = threading.Event(), threading.Event(), threading.Event()

    def old_socket(message: str) -> None:
        pass

    try:
        bus.subscribe("test:rejoin", old_socket)
        bus.when_confirmed("test:rejoin", first.set)
        assert first.wait(3)
        bus.unsubscribe("test:rejoin", old_socket)
        bus.subscribe("test:rejoin", lambda message: heard.set())
        bus.when_confirmed("test:rejoin", again.set)
        assert again.wait(0.8)
        assert sender.publish("test:rejoin", "halo")
        assert heard.wait(3)
    finally:
        bus.close()
        sender.close()


def test_valkey_replies_are_parsed_by_hiredis() -> None:
    """redis-py takes hiredis's C parser when it is installed (pyproject's `redis[hiredis]`): about
    3% of the gateway's CPU per message (docs/performance.md). Fails if the extra is dropped."""
    from redis.connection import DefaultParser
    from redis.utils import HIREDIS_AVAILABLE

    assert HIREDIS_AVAILABLE
    assert DefaultParser.__name__ == "_HiredisParser"


def test_channels_follow_subscribes_and_unsubscribes(valkey_url: str) -> None:
    """Valkey holds exactly the channels with a handler, whatever order they came and went in (the
    subscriber applies only what changed since it last looked), and no message reaches a handler
    that was removed."""
    bus, sender = _bus(valkey_url), _bus(valkey_url)
    raw = redis.Redis.from_url(valkey_url, decode_responses=True)
    prefix = f"db{valkey_url.rsplit('/', 1)[1]}:" if not valkey_url.endswith("/0") else ""
    heard: list[str] = []
    keep = heard.append
    try:
        names = [f"test:follow:{n}" for n in range(50)]
        for name in names:
            bus.subscribe(name, keep)
        for name in names[::2]:
            bus.unsubscribe(name, keep)
        bus.subscribe(names[0], keep)  # back before the subscriber looked, or after
        wanted = {prefix + n for n in [names[0], *names[1::2]]}
        deadline = time.monotonic() + 5
        while set(raw.pubsub_channels(f"{prefix}test:follow:*")) != wanted and time.monotonic() < deadline:
            time.sleep(0.05)
        assert set(raw.pubsub_channels(f"{prefix}test:follow:*")) == wanted
        for name in names:
            sender.publish(name, name)
        deadline = time.monotonic() + 3
        while len(heard) < len(wanted) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        assert sorted(heard) == sorted([names[0], *names[1::2]])
    finally:
        raw.close()
        bus.close()
        sender.close()
