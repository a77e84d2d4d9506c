"""Pushes through FCM (firebase-admin messaging only, never `.auth()`), for events whose recipient
has no live socket (DOMAIN.md, "Notifications"). Generic text only: never message content nor the
topic's sensitivity. Every push is on the Android channel `halobestie_chat_v2`, high priority.

Pushes leave from a few background threads, so no request waits on Google. Each recipient has its
own bounded queue, served in turn (`Notifier`): one noisy chat cannot delay or drop other users'
pushes. A full queue drops the push (logged, counted), as a push is a wake-up hint and the app
re-syncs when opened.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import firebase_admin
import redis
from firebase_admin import credentials, exceptions, messaging

from lib import sockets
from lib.config.env import settings as env_settings
from lib.db import Database
from lib.metrics import m
from lib.valkey import VALKEY_ERRORS, valkey_failed

log = logging.getLogger(__name__)

CHANNEL_ID = "halobestie_chat_v2"
# event type -> (push data `type`, title, body): the only events that wake a sleeping app.
PUSHES: dict[str, tuple[str, str, str]] = {
    "pairing.request": ("pairing_request", "Curhat Baru", "Ada yang ingin curhat denganmu"),
    "session.paired": ("paired", "Bestie ditemukan", "Bestie-mu siap mendengarkan"),
    "message.new": ("message", "Pesan baru", "Kamu punya pesan baru"),
    "extension.requested": ("extension_request", "Tambah waktu", "Ada permintaan tambah waktu"),
    "extension.resolved": ("extension_resolved", "Tambah waktu", "Ada kabar soal tambah waktu"),
    "session.closing": ("session_closing", "Sesi selesai", "Waktu curhat sudah habis"),
}
QUEUE_LIMIT = 10_000  # pushes waiting in all, whoever they are for
PUSH_WORKERS = 4  # a slow or failing FCM call holds one thread, not every push


def push_data(event_type: str, data: dict[str, Any]) -> dict[str, str]:
    """The data payload: the type, the session, and for `paired` the mitra's call name. FCM data
    values are strings."""
    kind = PUSHES[event_type][0]
    payload = {"type": kind}
    session_id = data.get("session_id")
    if session_id:
        payload["sessionId"] = str(session_id)
    if kind == "paired" and data.get("mitra_name"):
        payload["mitraName"] = str(data["mitra_name"])
    return payload


class Fcm:
    """The firebase-admin app, made on first use (so after the fork). `base_url` exists for the
    tests' fake FCM: firebase-admin has no endpoint option, so the messaging service's URL is set."""

    def __init__(self, service_account_path: str, base_url: str = "") -> None:
        self._path = service_account_path
        self._base_url = base_url.rstrip("/")
        self._app: firebase_admin.App | None = None
        self._lock = threading.Lock()

    def _ready(self) -> firebase_admin.App:
        with self._lock:
            if self._app is None:
                app = firebase_admin.initialize_app(credentials.Certificate(self._path), name=f"halobestie-{id(self)}")
                if self._base_url:
                    service = messaging._get_messaging_service(app)
                    service._fcm_url = f"{self._base_url}/v1/projects/{app.project_id}/messages:send"
                self._app = app
            return self._app

    def send(self, token: str, event_type: str, data: dict[str, Any]) -> str:
        """ "sent", "unregistered" (the token is dead) or "failed"."""
        kind, title, body = PUSHES[event_type]
        # A message told again (its sender retried, lib/chat/messages.py) replaces its own
        # notification on the phone instead of adding a second one.
        collapse = str(data["id"]) if event_type == "message.new" and data.get("id") else None
        apns_headers = {"apns-priority": "10"} | ({"apns-collapse-id": collapse} if collapse else {})
        message = messaging.Message(
            token=token,  # a registration token, as the apps register them (deprecated for `fid`, still served)
            data=push_data(event_type, data),
            notification=messaging.Notification(title=title, body=body),
            android=messaging.AndroidConfig(
                priority="high", notification=messaging.AndroidNotification(channel_id=CHANNEL_ID, tag=collapse)
            ),
            apns=messaging.APNSConfig(headers=apns_headers),
        )
        try:
            messaging.send(message, app=self._ready())
            outcome = "sent"
        except messaging.UnregisteredError:
            outcome = "unregistered"
        except (exceptions.FirebaseError, ValueError) as exc:
            log.warning("push %s failed: %s", kind, type(exc).__name__)
            outcome = "failed"
        m().pushes.labels(kind, outcome).inc()
        return outcome

    def close(self) -> None:
        with self._lock:
            if self._app is not None:
                _outside_any_loop(firebase_admin.delete_app, self._app)
                self._app = None


def _outside_any_loop(fn: Callable[[firebase_admin.App], None], app: firebase_admin.App) -> None:
    """firebase-admin's messaging service closes its HTTP client with asyncio.run(), which raises in
    a thread running an event loop: the gateway closes its services in the ASGI lifespan shutdown
    (before, every SIGTERM of a realtime process failed there and left its pools open)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        fn(app)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fcm-close") as pool:
        pool.submit(fn, app).result()  # its exception, if any, is raised here


Recipient = tuple[str, str]  # (user_type, user_id)
Push = tuple[str, dict[str, Any]]  # (event_type, data)


class Notifier:
    """Decides, per recipient, whether an event needs a push, and sends it, off the caller's thread.

    Fair share: each recipient has its own queue of at most `per_recipient` pushes, and a few
    threads serve the recipients in turn, one push per turn. A noisy chat only lengthens its own
    recipients' queues: beyond the bound their oldest waiting push is dropped (counted as
    "dropped"; the newest says most, and the app re-syncs when opened), and everyone else's pushes
    go out on their next turn. One recipient's pushes leave in order, one at a time.
    """

    def __init__(
        self,
        db: Database,
        valkey: redis.Redis,
        fcm: Fcm | None,
        *,
        per_recipient: int | None = None,
        workers: int = PUSH_WORKERS,
    ) -> None:
        self._db = db
        self._valkey = valkey
        self._fcm = fcm
        self._per_recipient = env_settings().push_queue_per_recipient if per_recipient is None else per_recipient
        self._workers = workers
        self._queues: dict[Recipient, deque[Push]] = {}
        self._turns: deque[Recipient] = deque()  # recipients with a push waiting and none in flight
        self._scheduled: set[Recipient] = set()  # recipients in _turns or with a push in flight
        self._pending = 0  # pushes queued or in flight
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._changed = threading.Condition()
        self.sent = 0

    @property
    def enabled(self) -> bool:
        return self._fcm is not None

    def notify(self, recipients: Iterable[tuple[str, str]], event_type: str, data: dict[str, Any]) -> None:
        if self._fcm is None or event_type not in PUSHES:
            return
        dropped: list[str] = []
        with self._changed:
            if self._closed:
                return
            if not self._threads:
                self._threads = [
                    threading.Thread(target=self._run, name=f"push-{n}", daemon=True) for n in range(self._workers)
                ]
                for thread in self._threads:
                    thread.start()
            for recipient in recipients:
                waiting = self._queues.setdefault(recipient, deque())
                if len(waiting) >= self._per_recipient:
                    dropped.append(waiting.popleft()[0])  # this recipient's oldest waiting push
                elif self._pending >= QUEUE_LIMIT:
                    dropped.append(event_type)
                    if not waiting and recipient not in self._scheduled:
                        del self._queues[recipient]
                    continue
                else:
                    self._pending += 1
                waiting.append((event_type, data))
                if recipient not in self._scheduled:
                    self._scheduled.add(recipient)
                    self._turns.append(recipient)
            self._changed.notify_all()
        for kind in dropped:
            m().pushes.labels(PUSHES[kind][0], "dropped").inc()
            log.warning("push queue full: %s dropped", kind)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._turns) or self._closed)
                if self._closed:
                    return
                recipient = self._turns.popleft()
                event_type, data = self._queues[recipient].popleft()
            try:
                self.deliver(recipient[0], recipient[1], event_type, data)
            except Exception:  # one bad push must not stop the others
                log.exception("push %s to %s failed", event_type, recipient[0])
            with self._changed:
                if self._queues[recipient]:
                    self._turns.append(recipient)  # its next push waits for everyone else's turn
                else:
                    del self._queues[recipient]
                    self._scheduled.discard(recipient)
                self._pending -= 1
                self._changed.notify_all()

    def deliver(self, user_type: str, user_id: str, event_type: str, data: dict[str, Any]) -> int:
        """Push to every device of the user unless a live socket carries the event; returns pushes sent."""
        assert self._fcm is not None
        try:
            session_id = data.get("session_id")
            if sockets.covered(self._valkey, user_type, user_id, str(session_id) if session_id else None):
                return 0
        except VALKEY_ERRORS:
            valkey_failed("push")  # cannot tell: rather a push too many than a missed chat
        rows = self._db.fetch_all(
            "SELECT token FROM device_tokens WHERE user_type = %(user_type)s AND user_id = %(user_id)s",
            {"user_type": user_type, "user_id": user_id},
        )
        sent = 0
        for row in rows:
            outcome = self._fcm.send(row["token"], event_type, data)
            if outcome == "unregistered":
                self._db.execute("DELETE FROM device_tokens WHERE token = %(token)s", {"token": row["token"]})
            elif outcome == "sent":
                sent += 1
        with self._changed:
            self.sent += sent
        return sent

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until every queued push has been handled; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        """Send what is queued (for up to 3 s), then stop the threads."""
        self.drain(timeout=3)
        with self._changed:
            self._closed = True
            threads, self._threads = self._threads, []
            self._changed.notify_all()
        for thread in threads:
            thread.join(timeout=3)
        if self._fcm is not None:
            self._fcm.close()
