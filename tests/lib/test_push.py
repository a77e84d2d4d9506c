"""Pushes through the real firebase-admin client against a fake FCM and OAuth server on loopback:
sent exactly when no live socket carries the event, generic text, dead tokens deleted."""

from __future__ import annotations

import io
import json
import queue
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from prometheus_client import REGISTRY

from lib import sockets
from lib.config.env import Settings
from lib.push import Fcm, Notifier
from lib.services import Services
from runtime.container import build_services
from tests.chatflow import Chat
from tests.conftest import bearer
from tests.fakes import FakeFcm


@pytest.fixture
def fcm() -> Iterator[FakeFcm]:
    fake = FakeFcm()
    with fake.running():
        yield fake


@pytest.fixture
def pushing(settings: Settings, fcm: FakeFcm, tmp_path: Path) -> Iterator[Services]:
    configured = replace(
        settings, firebase_service_account_path=fcm.service_account(tmp_path / "sa.json"), fcm_base_url=fcm.url
    )
    svc = build_services(configured, application_name="push-test")
    yield svc
    svc.close()


def _device(services: Services, user_type: str, user_id: str, token: str) -> None:
    services.db.execute(
        "INSERT INTO device_tokens (token, user_type, user_id, platform) VALUES (%(t)s, %(ut)s, %(u)s, 'android')",
        {"t": token, "ut": user_type, "u": user_id},
    )


def test_a_push_goes_to_every_device_and_a_dead_token_is_deleted(pushing: Services, fcm: FakeFcm, anonymous) -> None:
    customer = anonymous()["user"]["id"]
    _device(pushing, "customer", customer, "phone-token")
    _device(pushing, "customer", customer, "old-tablet")
    fcm.unregistered.add("old-tablet")
    message_id = str(uuid.uuid4())
    sent = pushing.notifier.deliver(
        "customer", customer, "message.new", {"id": message_id, "session_id": "s-1", "content": "rahasia"}
    )
    assert sent == 1
    assert [m["token"] for m in fcm.sent] == ["phone-token"]
    message = fcm.sent[0]
    assert message["android"]["priority"] == "high"
    assert message["android"]["notification"]["channel_id"] == "halobestie_chat_v2"
    # a message told again replaces its own notification (Android tag, APNs collapse id)
    assert message["android"]["notification"]["tag"] == message_id
    assert message["apns"]["headers"] == {"apns-priority": "10", "apns-collapse-id": message_id}
    assert message["data"] == {"type": "message", "sessionId": "s-1"}
    assert "rahasia" not in str(message)  # never the content
    left = pushing.db.fetch_all("SELECT token FROM device_tokens")
    assert [r["token"] for r in left] == ["phone-token"]
    assert fcm.token_requests == 1  # the OAuth token is fetched once and reused


def test_no_push_while_a_socket_carries_the_event(pushing: Services, fcm: FakeFcm, anonymous) -> None:
    customer = anonymous()["user"]["id"]
    _device(pushing, "customer", customer, "phone-token")
    key = sockets.key("customer", customer)
    sockets.announce(pushing.valkey, [(key, sockets.member("gateway-a", "session-1"))])
    assert pushing.notifier.deliver("customer", customer, "message.new", {"session_id": "session-1"}) == 0
    # A socket joined to another session does not carry this one's events.
    assert pushing.notifier.deliver("customer", customer, "message.new", {"session_id": "session-2"}) == 1
    sockets.announce(pushing.valkey, [(key, sockets.member("gateway-b", None))])  # the general channel
    assert pushing.notifier.deliver("customer", customer, "message.new", {"session_id": "session-2"}) == 0
    pushing.valkey.delete(key)  # a crashed gateway's sockets lapse
    assert (
        pushing.notifier.deliver("customer", customer, "session.paired", {"session_id": "s", "mitra_name": "Ayu"}) == 1
    )
    assert fcm.sent[-1]["data"] == {"type": "paired", "sessionId": "s", "mitraName": "Ayu"}


def test_the_flow_pushes_what_needs_waking(
    pay_settings: Settings, fcm: FakeFcm, tmp_path: Path, make_mitra, anonymous, cc_login
) -> None:
    configured = replace(
        pay_settings, firebase_service_account_path=fcm.service_account(tmp_path / "sa.json"), fcm_base_url=fcm.url
    )
    svc = build_services(configured, application_name="push-flow")
    chat = Chat(svc, make_mitra, anonymous, cc_login)
    try:
        _mitra, token = chat.mitra("Ayu")
        customer = chat.customer()
        for who, tok in (("mitra", token), ("customer", customer["access_token"])):
            put = chat.app.simulate_put(
                "/api/shared/devices/fcm-token",
                headers=bearer(tok),
                json={"token": f"{who}-device", "platform": "android"},
            )
            assert put.status_code == 204
        session_id = chat.session_of(chat.pay_for(customer))
        assert svc.notifier.drain()
        assert [(m["token"], m["data"]["type"]) for m in fcm.sent] == [("mitra-device", "pairing_request")]
        chat.accept(token, session_id)
        chat.app.simulate_post(
            f"/api/shared/chat/{session_id}/messages",
            headers=bearer(token),
            json={"client_message_id": "a", "content": "Halo"},
        )
        assert svc.notifier.drain()
        kinds: list[Any] = [(m["token"], m["data"]["type"]) for m in fcm.sent]
        assert kinds[1:] == [("customer-device", "paired"), ("customer-device", "message")]
        assert "Halo" not in str(fcm.sent)
    finally:
        chat.heard.close()
        svc.close()


class GatedFcm(FakeFcm):
    """The fake FCM, its sends held open at will: each send records its device token on arrival
    and then waits for `gate`."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.arrivals: queue.Queue[str] = queue.Queue()
        server = self
        plain = self._httpd.RequestHandlerClass

        class Gated(plain):  # type: ignore[misc,valid-type]
            rfile: BinaryIO

            def do_POST(self) -> None:
                if self.path.endswith("/messages:send"):
                    length = int(self.headers.get("Content-Length") or 0)
                    body = self.rfile.read(length)
                    server.arrivals.put(json.loads(body)["message"]["token"])
                    server.gate.wait(10)
                    self.rfile = io.BytesIO(body)  # the plain handler reads it again
                super().do_POST()

        self._httpd.RequestHandlerClass = Gated

    def next_arrival(self, timeout: float = 5.0) -> str | None:
        try:
            return self.arrivals.get(timeout=timeout)
        except queue.Empty:
            return None


def _dropped() -> float:
    return REGISTRY.get_sample_value("halobestie_pushes_total", {"type": "message", "outcome": "dropped"}) or 0.0


@pytest.mark.parametrize("workers", [1, 4])
def test_a_noisy_recipient_neither_delays_nor_drops_anyone_else(
    services: Services, tmp_path: Path, anonymous, workers: int
) -> None:
    fake = GatedFcm()
    with fake.running():
        fcm = Fcm(fake.service_account(tmp_path / "sa.json"), fake.url)
        notifier = Notifier(services.db, services.valkey, fcm, per_recipient=3, workers=workers)
        noisy, quiet = anonymous()["user"]["id"], anonymous()["user"]["id"]
        _device(services, "customer", noisy, "noisy-phone")
        _device(services, "customer", quiet, "quiet-phone")
        dropped_before = _dropped()
        try:
            fake.gate.clear()
            notifier.notify([("customer", noisy)], "message.new", {"session_id": "s-0"})
            assert fake.next_arrival() == "noisy-phone"  # in flight, held at FCM
            for n in range(1, 31):  # a noisy chat: 30 more while that one is out
                notifier.notify([("customer", noisy)], "message.new", {"session_id": f"s-{n}"})
            notifier.notify([("customer", quiet)], "message.new", {"session_id": "q-1"})
            if workers > 1:  # a free thread takes the quiet user's push at once
                assert fake.next_arrival() == "quiet-phone"
            fake.gate.set()
            assert notifier.drain()
            served = [fake.next_arrival(0) for _ in range(fake.arrivals.qsize())]
        finally:
            notifier.close()
    arrived = ["noisy-phone"] + (["quiet-phone"] if workers > 1 else []) + served
    # The quiet user's push went out right after the one in flight, not behind the noisy backlog.
    assert arrived == ["noisy-phone", "quiet-phone", "noisy-phone", "noisy-phone", "noisy-phone"]
    noisy_sessions = [m["data"]["sessionId"] for m in fake.sent if m["token"] == "noisy-phone"]
    assert noisy_sessions == ["s-0", "s-28", "s-29", "s-30"]  # bounded at 3 waiting: the oldest went
    assert [m["data"]["sessionId"] for m in fake.sent if m["token"] == "quiet-phone"] == ["q-1"]
    assert _dropped() - dropped_before == 27
