"""Cross-process fan-out over Valkey pub/sub: one subscriber thread per process, best effort.

Publishing never raises (Valkey down = the message is lost, and every consumer has a PostgreSQL
fallback that catches up). Subscribers learn when the link was down through `on_reconnect`.

Valkey's pub/sub ignores the database number, so channels are namespaced by it (`db3:auth:revoked`;
no prefix on database 0): two deployments, or two parallel test workers, that share one server on
different databases never hear each other.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis

from lib.valkey import VALKEY_ERRORS, valkey_failed

log = logging.getLogger(__name__)

Handler = Callable[[str], None]


class Bus:
    def __init__(self, url: str, publisher: redis.Redis, *, connect_timeout: float = 0.3) -> None:
        self._url = url
        self._publisher = publisher
        database = int(publisher.connection_pool.connection_kwargs.get("db") or 0)
        self._prefix = f"db{database}:" if database else ""
        self._connect_timeout = connect_timeout
        self._handlers: dict[str, list[Handler]] = {}
        self._reconnect_hooks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        # Channels added or removed since the subscriber thread last looked. Only these are compared
        # (O(changes)): recomputing the whole set was O(channels) of GIL time, beside the gateway's
        # loop, for every socket opened or closed (about 6,000 channels per process in
        # make bench-realtime).
        self._touched: set[str] = set()
        # Channels Valkey has confirmed on the current link, and what waits for a channel's
        # confirmation (a set and short-lived hooks: a gateway holds a channel per user, and a
        # threading.Event per channel was 1.2 KB on every idle socket).
        self._confirmed: set[str] = set()
        self._on_confirmed: dict[str, list[Callable[[], None]]] = {}
        self.healthy = False

    def publish(self, channel: str, message: str) -> bool:
        try:
            self._publisher.publish(self._prefix + channel, message)
            return True
        except VALKEY_ERRORS as exc:
            valkey_failed("bus")
            log.warning("bus publish on %s failed: %s", channel, type(exc).__name__)
            return False

    def publish_many(self, messages: list[tuple[str, str]]) -> bool:
        """Several (channel, message) pairs in one round trip."""
        if not messages:
            return True
        try:
            pipe = self._publisher.pipeline(transaction=False)
            for channel, message in messages:
                pipe.publish(self._prefix + channel, message)
            pipe.execute()
            return True
        except VALKEY_ERRORS as exc:
            valkey_failed("bus")
            log.warning("bus publish of %d message(s) failed: %s", len(messages), type(exc).__name__)
            return False

    def subscribe(self, channel: str, handler: Handler) -> None:
        """Handle messages on `channel` (a caller that must not miss what is published next waits
        for `when_confirmed`)."""
        with self._lock:
            self._handlers.setdefault(self._prefix + channel, []).append(handler)
            self._touched.add(self._prefix + channel)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="bus-subscriber", daemon=True)
                self._thread.start()

    def when_confirmed(self, channel: str, hook: Callable[[], None]) -> None:
        """Call `hook` once Valkey has confirmed the subscription to `channel` on the current link:
        at once if it has, else from the subscriber thread when it does (after a lost link, when
        the next one confirms it). A hook may never be called (Valkey away): callers wait with a
        timeout."""
        with self._lock:
            name = self._prefix + channel
            if name not in self._confirmed:
                self._on_confirmed.setdefault(name, []).append(hook)
                return
        hook()

    def unsubscribe(self, channel: str, handler: Handler) -> None:
        with self._lock:
            handlers = self._handlers.get(self._prefix + channel, [])
            if handler in handlers:
                handlers.remove(handler)
            if not handlers:
                self._handlers.pop(self._prefix + channel, None)
                self._confirmed.discard(self._prefix + channel)
                self._on_confirmed.pop(self._prefix + channel, None)
            self._touched.add(self._prefix + channel)

    def on_reconnect(self, hook: Callable[[], None]) -> None:
        """Called after the subscription is (re)established: catch up on what may have been missed."""
        with self._lock:
            self._reconnect_hooks.append(hook)

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            client = redis.Redis.from_url(
                self._url,
                socket_connect_timeout=self._connect_timeout,
                socket_timeout=5,
                decode_responses=True,
                health_check_interval=10,
            )
            pubsub = client.pubsub()  # type: ignore[no-untyped-call,unused-ignore]
            try:
                with self._lock:
                    channels = list(self._handlers)
                    self._touched.clear()
                live = set(channels)  # what this link is subscribed to (asked for)
                acked: set[str] = set()  # ... and Valkey has confirmed on it
                if channels:
                    pubsub.subscribe(*channels)
                else:
                    client.ping()  # nothing to subscribe to yet: still prove the link is up
                self.healthy = True
                self._subscribed.set()
                for hook in list(self._reconnect_hooks):
                    self._safe(hook)
                while not self._stop.is_set():
                    if self._touched:
                        with self._lock:
                            touched, self._touched = self._touched, set()
                            wanted = {c for c in touched if c in self._handlers}
                        add = [c for c in wanted if c not in live]
                        drop = [c for c in touched - wanted if c in live]
                        if add:
                            pubsub.subscribe(*add)
                            live.update(add)
                        if drop:
                            pubsub.unsubscribe(*drop)  # type: ignore[no-untyped-call,unused-ignore]
                            live.difference_update(drop)
                            acked.difference_update(drop)
                        # Unsubscribed and subscribed again before this thread looked: the link
                        # never left the channel, so Valkey sends no new confirmation; confirmed
                        # already, it is confirmed again here (else its waiter waited out its timeout).
                        for channel in wanted & acked:
                            self._confirm(channel)
                    message = pubsub.get_message(timeout=0.25)  # short, so close() is quick
                    if not message:
                        continue
                    if message.get("type") == "message":
                        for handler in list(self._handlers.get(message["channel"], ())):
                            self._safe(handler, message["data"])
                    elif message.get("type") == "subscribe":
                        acked.add(message["channel"])
                        self._confirm(message["channel"])
            except VALKEY_ERRORS as exc:
                valkey_failed("bus")
                if self.healthy:
                    log.warning("bus subscription lost: %s; consumers fall back to PostgreSQL", type(exc).__name__)
                self.healthy = False
                self._stop.wait(1.0)
            finally:
                self.healthy = False
                with self._lock:
                    self._confirmed.clear()  # to be confirmed again by the next connection
                try:
                    pubsub.close()
                    client.close()
                except VALKEY_ERRORS:
                    valkey_failed("bus")

    def _confirm(self, channel: str) -> None:
        with self._lock:
            if channel not in self._handlers:
                return  # unsubscribed meanwhile
            self._confirmed.add(channel)
            hooks = self._on_confirmed.pop(channel, [])
        for hook in hooks:
            self._safe(hook)

    @staticmethod
    def _safe(fn: Callable[..., None], *args: str) -> None:
        try:
            fn(*args)
        except Exception:  # a broken consumer must not kill the subscriber thread
            log.exception("bus handler failed")

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=3)
        self._thread = None
