"""Pushes through the real firebase-admin client against a fake FCM and OAuth server on loopback:
sent exactly when no live socket carries the event, generic text, dead tokens deleted."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from lib import sockets
from lib.config.env import Settings
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
    sent = pushing.notifier.deliver("customer", customer, "message.new", {"session_id": "s-1", "content": "rahasia"})
    assert sent == 1
    assert [m["token"] for m in fcm.sent] == ["phone-token"]
    message = fcm.sent[0]
    assert message["android"]["priority"] == "high"
    assert message["android"]["notification"]["channel_id"] == "halobestie_chat_v2"
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
