"""Closing the FCM sender from an event loop's thread (found by the soak, issue 27): the gateway
closes its services in the ASGI lifespan shutdown, and firebase-admin's messaging service closes
its HTTP client with asyncio.run(), which raises inside a running loop. Every SIGTERM of a realtime
process logged "Lifespan shutdown error" and left its database pool, Valkey and bus unclosed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from lib.push import Fcm
from tests.fakes import FakeFcm


@pytest.fixture
def fcm() -> Iterator[FakeFcm]:
    fake = FakeFcm()
    with fake.running():
        yield fake


def test_close_from_a_running_event_loop_closes_the_app(fcm: FakeFcm, tmp_path: Path) -> None:
    sender = Fcm(fcm.service_account(tmp_path / "sa.json"), fcm.url)
    assert sender.send("device-1", "message.new", {"session_id": "s-1"}) == "sent"

    async def lifespan_shutdown() -> None:
        sender.close()

    asyncio.run(lifespan_shutdown())
    assert len(fcm.sent) == 1
    sender.close()  # twice is harmless


def test_close_outside_a_loop_still_closes(fcm: FakeFcm, tmp_path: Path) -> None:
    sender = Fcm(fcm.service_account(tmp_path / "sa.json"), fcm.url)
    assert sender.send("device-1", "message.new", {"session_id": "s-1"}) == "sent"
    sender.close()
    # A closed sender makes its app again on the next send (a process that keeps running).
    assert sender.send("device-2", "message.new", {"session_id": "s-1"}) == "sent"
    sender.close()
