"""A harness for the pairing and session tests: real apps on the payment services (fake Xendit),
mitras online, paid requests through the real webhook, the worker's deadline job on demand, and a
Valkey listener that records what each user would hear."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from falcon import testing

from lib.auth.flows import access_for, sign_in
from lib.config.app import set_values
from lib.services import Services
from runtime.app import create_app
from runtime.worker import JobModule, Worker, discover_jobs
from tests.conftest import bearer
from tests.payflow import create_payment, paid_body, send_callback, tier_of


class Heard:
    """Subscribes to users' event channels (as the realtime gateway does) and records the frames."""

    def __init__(self, valkey_url: str, prefix: str) -> None:
        self._client = redis.Redis.from_url(valkey_url, decode_responses=True)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call,unused-ignore]
        self._prefix = prefix
        self.frames: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def listen(self, user_type: str, user_id: object) -> str:
        channel = f"{self._prefix}user:{user_type}:{user_id}"
        self._pubsub.subscribe(channel)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return channel

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._pubsub.get_message(timeout=0.05)
            except redis.RedisError:
                return  # the test stopped this Valkey
            if message and message["type"] == "message":
                with self._lock:
                    self.frames.setdefault(message["channel"], []).append(json.loads(message["data"]))

    def of(self, user_type: str, user_id: object, wait_for: str | None = None, timeout: float = 3.0) -> list[str]:
        """The event types this user heard, in order; waits until `wait_for` arrived."""
        channel = f"{self._prefix}user:{user_type}:{user_id}"
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                types = [f["type"] for f in self.frames.get(channel, [])]
            if wait_for is None or wait_for in types or time.monotonic() > deadline:
                return types
            time.sleep(0.02)

    def data(self, user_type: str, user_id: object, event_type: str) -> list[dict[str, Any]]:
        """The `data` of every `event_type` frame this user heard so far, in order."""
        channel = f"{self._prefix}user:{user_type}:{user_id}"
        with self._lock:
            return [f["data"] for f in self.frames.get(channel, []) if f["type"] == event_type]

    def last(
        self,
        user_type: str,
        user_id: object,
        event_type: str,
        where: Callable[[dict[str, Any]], bool] = lambda _: True,
        timeout: float = 3.0,
    ) -> dict[str, Any]:
        """The newest `event_type` frame heard so far that `where` accepts, waiting for the first
        such frame (an earlier frame of the type does not end the wait when `where` refuses it)."""
        channel = f"{self._prefix}user:{user_type}:{user_id}"
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = [f for f in self.frames.get(channel, []) if f["type"] == event_type and where(f)]
            if found:
                return found[-1]
            assert time.monotonic() < deadline, f"no {event_type} heard by {user_type} {user_id}"
            time.sleep(0.02)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._pubsub.close()
        self._client.close()


class Chat:
    """Drives whole flows against the real apps."""

    def __init__(self, pay: Services, make_mitra, anonymous, cc_login) -> None:
        self.pay = pay
        self.app = testing.TestClient(create_app("public", pay))
        self.cc = testing.TestClient(create_app("internal", pay))
        self._make_mitra = make_mitra
        self._anonymous = anonymous
        self._cc_login = cc_login
        self._phones = iter(range(100, 10_000))
        self.deadlines = next(j for j in discover_jobs() if j.name == "chat_deadlines")
        db_number = int(pay.settings.redis_url.rsplit("/", 1)[1])
        self.heard = Heard(pay.settings.redis_url, f"db{db_number}:" if db_number else "")

    def config(self, **values: Any) -> None:
        set_values(self.pay.db, None, values, None)
        self.pay.config.invalidate()

    def mitra(self, name: str = "Bestie", online: bool = True) -> tuple[dict[str, Any], str]:
        row = self._make_mitra(f"+628129{next(self._phones):06d}", name)
        with self.pay.db.connection() as conn:
            grant = sign_in(conn, self.pay.settings, "mitra", str(row["id"]))
        token = str(access_for(self.pay.settings, grant)["access_token"])
        self.heard.listen("mitra", row["id"])
        if online:
            assert self.app.simulate_post("/api/mitra/status/online", headers=bearer(token)).status_code == 200
        return dict(row), token

    def customer(self, name: str = "Pelanggan") -> dict[str, Any]:
        pair: dict[str, Any] = self._anonymous(name)
        self.heard.listen("customer", pair["user"]["id"])
        return pair

    def admin(self) -> str:
        _, token, _ = self._cc_login("admin")
        return str(token)

    def pay_for(self, customer: dict[str, Any], minutes: int = 15, **extra: Any) -> dict[str, Any]:
        """Create a payment request and pay it through the webhook: pairing starts."""
        created = create_payment(self.app, customer, tier_of(self.pay, minutes), **extra)
        assert created.status_code == 201, created.text
        doc: dict[str, Any] = created.json["data"]
        paid = send_callback(self.app, paid_body(doc))
        assert paid.json.get("confirmed") is True, paid.json
        return doc

    def session_of(self, payment: dict[str, Any]) -> str:
        row = self.pay.db.fetch_one("SELECT session_id FROM payment_requests WHERE id = %(id)s", {"id": payment["id"]})
        assert row is not None
        assert row["session_id"] is not None
        return str(row["session_id"])

    def accept(self, token: str, session_id: str) -> testing.Result:
        return self.app.simulate_post(f"/api/mitra/chat-requests/{session_id}/accept", headers=bearer(token))

    def paired(self, minutes: int = 15) -> tuple[dict[str, Any], dict[str, Any], str, str]:
        """(customer, mitra, mitra token, session id) of a session that is active."""
        mitra, token = self.mitra()
        customer = self.customer()
        session_id = self.session_of(self.pay_for(customer, minutes))
        assert self.accept(token, session_id).status_code == 200
        return customer, mitra, token, session_id

    def tick(self) -> None:
        """One run of the worker's deadline job, as the worker would."""
        worker = Worker(self.pay, [self.deadlines])
        worker.tick(self.deadlines)

    def due_now(self, session_id: str, column: str) -> None:
        """Move a deadline into the past, as if its time had come."""
        allowed = {"search_expires_at", "expires_at", "closing_expires_at", "choice_expires_at"}
        assert column in allowed
        self.pay.db.execute(
            f"UPDATE chat_sessions SET {column} = now() - interval '1 second' WHERE id = %(s)s",  # noqa: S608 (a column from the set above)
            {"s": session_id},
        )

    def status(self, session_id: str) -> str:
        row = self.pay.db.fetch_one("SELECT status FROM chat_sessions WHERE id = %(s)s", {"s": session_id})
        assert row is not None
        return str(row["status"])

    def payment_status(self, payment: dict[str, Any]) -> str:
        row = self.pay.db.fetch_one("SELECT status FROM payment_requests WHERE id = %(id)s", {"id": payment["id"]})
        assert row is not None
        return str(row["status"])


@pytest.fixture
def chat(pay: Services, make_mitra, anonymous, cc_login) -> Iterator[Chat]:
    harness = Chat(pay, make_mitra, anonymous, cc_login)
    yield harness
    harness.heard.close()


def job(name: str) -> JobModule:
    return next(j for j in discover_jobs() if j.name == name)
