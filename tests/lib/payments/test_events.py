"""The payment-confirmed event reaches other processes over the bus."""

from __future__ import annotations

import threading
import time

from runtime.container import build_services
from tests.payflow import create_payment, paid_body, send_callback, tier_of


def test_confirmation_reaches_other_processes_over_the_bus(app, pay, settings, online_mitra, customer) -> None:
    other = build_services(settings, application_name="pairing-process")
    received: list[str] = []
    done = threading.Event()
    try:

        def on_message(message: str) -> None:
            received.append(message)
            done.set()

        other.bus.subscribe("payments:confirmed", on_message)
        assert other.bus.wait_subscribed(2)
        doc = create_payment(app, customer, tier_of(pay)).json["data"]
        send_callback(app, paid_body(doc))
        send_callback(app, paid_body(doc))
        assert done.wait(2)
        time.sleep(0.3)
    finally:
        other.close()
    assert received == [doc["id"]]
