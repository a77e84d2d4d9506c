"""Calls to outside services share a process's slots: a provider that hangs holds only those, a call
finding none free is refused at once as never sent, and every call gives its slot back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from lib.auth.otp_providers import OtpProviderFailed, TwilioVerify
from lib.outside import Slots
from lib.payments.gateway import GatewayError, InvoiceOutcomeUnknown, XenditGateway
from tests.fakes import FakeTwilioVerify, FakeXendit
from tests.helpers import free_port
from tests.payflow import SECRET

ACCOUNT, TOKEN, SERVICE = "AC" + "1a" * 16, "twilio-auth-token", "VA" + "2b" * 16
PHONE = "+6281234567890"


@pytest.fixture
def twilio() -> Iterator[FakeTwilioVerify]:
    with FakeTwilioVerify(ACCOUNT, TOKEN, SERVICE).running() as fake:
        yield fake


def _invoice(gateway: XenditGateway, external_id: str) -> None:
    gateway.create_invoice(external_id=external_id, amount=10_000, description="d", duration_seconds=60)


def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_hanging_provider_holds_only_its_slots(xendit: FakeXendit, twilio: FakeTwilioVerify) -> None:
    slots = Slots(1)
    gateway = XenditGateway(xendit.url, SECRET, slots=slots, read_timeout=5)
    otp = TwilioVerify(twilio.url, ACCOUNT, TOKEN, SERVICE, channel="sms", timeout=5, slots=slots)
    xendit.delay = 3.0
    hanging = threading.Thread(target=_invoice, args=(gateway, "first"))
    hanging.start()
    _until(lambda: xendit.started == 1)

    started = time.monotonic()
    with pytest.raises(GatewayError) as refused:
        _invoice(gateway, "second")
    assert not isinstance(refused.value, InvoiceOutcomeUnknown)  # never sent: the caller drops its row
    with pytest.raises(OtpProviderFailed) as failed:
        otp.send(PHONE, None)
    assert failed.value.maybe_sent is False  # nothing sent: the OTP request is forgotten
    assert time.monotonic() - started < xendit.delay / 2  # refused at once, not queued behind the hanging call
    assert xendit.started == 1
    assert twilio.requests == []

    hanging.join()
    assert [i["external_id"] for i in xendit.created] == ["first"]
    otp.send(PHONE, None)  # the slot is back
    assert [s["to"] for s in twilio.sent] == [PHONE]


def test_a_failed_call_gives_its_slot_back(twilio: FakeTwilioVerify) -> None:
    slots = Slots(1)
    gateway = XenditGateway(f"http://127.0.0.1:{free_port()}", SECRET, attempts=1, slots=slots)
    otp = TwilioVerify(twilio.url, ACCOUNT, TOKEN, SERVICE, channel="sms", timeout=5, slots=slots)
    for _ in range(3):
        with pytest.raises(GatewayError):
            _invoice(gateway, "unreachable")
    twilio.fail_next = 1
    with pytest.raises(OtpProviderFailed):
        otp.send(PHONE, None)
    otp.send(PHONE, None)
    assert len(twilio.requests) == 2


def test_no_limit_without_a_size(xendit: FakeXendit) -> None:
    gateway = XenditGateway(xendit.url, SECRET, read_timeout=5)  # the worker's: its threads are its jobs
    xendit.delay = 0.5
    calls = [threading.Thread(target=_invoice, args=(gateway, f"job-{i}")) for i in range(4)]
    for t in calls:
        t.start()
    for t in calls:
        t.join()
    assert len(xendit.created) == 4
