"""Pushes through FCM (firebase-admin messaging only, never `.auth()`), for events whose recipient
has no live socket (DOMAIN.md, "Notifications"). Generic text only: never message content nor the
topic's sensitivity. Every push is on the Android channel `halobestie_chat_v2`, high priority.

Pushes leave from a background thread with a bounded queue, so no request waits on Google; a full
queue drops the push (logged), as a push is a wake-up hint and the app re-syncs when opened.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable
from typing import Any

import firebase_admin
import redis
from firebase_admin import credentials, exceptions, messaging

from lib import sockets
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
QUEUE_LIMIT = 10_000


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
        message = messaging.Message(
            token=token,  # a registration token, as the apps register them (deprecated for `fid`, still served)
            data=push_data(event_type, data),
            notification=messaging.Notification(title=title, body=body),
            android=messaging.AndroidConfig(
                priority="high", notification=messaging.AndroidNotification(channel_id=CHANNEL_ID)
            ),
            apns=messaging.APNSConfig(headers={"apns-priority": "10"}),
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
                firebase_admin.delete_app(self._app)
                self._app = None


class Notifier:
    """Decides, per recipient, whether an event needs a push, and sends it, off the caller's thread."""

    def __init__(self, db: Database, valkey: redis.Redis, fcm: Fcm | None) -> None:
        self._db = db
        self._valkey = valkey
        self._fcm = fcm
        self._queue: queue.Queue[tuple[list[tuple[str, str]], str, dict[str, Any]] | None] = queue.Queue(QUEUE_LIMIT)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition()
        self._pending = 0
        self.sent = 0

    @property
    def enabled(self) -> bool:
        return self._fcm is not None

    def notify(self, recipients: Iterable[tuple[str, str]], event_type: str, data: dict[str, Any]) -> None:
        if self._fcm is None or event_type not in PUSHES:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="push", daemon=True)
                self._thread.start()
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait((list(recipients), event_type, data))
        except queue.Full:
            self._done()
            m().pushes.labels(PUSHES[event_type][0], "dropped").inc()
            log.warning("push queue full: %s dropped", event_type)

    def _done(self) -> None:
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            recipients, event_type, data = item
            for user_type, user_id in recipients:
                try:
                    self.deliver(user_type, user_id, event_type, data)
                except Exception:  # one bad push must not stop the others
                    log.exception("push %s to %s failed", event_type, user_type)
            self._done()

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
            "SELECT token FROM device_tokens WHERE user_type = %(t)s AND user_id = %(u)s",
            {"t": user_type, "u": user_id},
        )
        sent = 0
        for row in rows:
            outcome = self._fcm.send(row["token"], event_type, data)
            if outcome == "unregistered":
                self._db.execute("DELETE FROM device_tokens WHERE token = %(t)s", {"t": row["token"]})
            elif outcome == "sent":
                sent += 1
        self.sent += sent
        return sent

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until every queued push has been handled; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=3)
        if self._fcm is not None:
            self._fcm.close()
