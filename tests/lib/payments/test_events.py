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

        # Valkey's confirmation of this channel (not only a link up): a message published before
        # it would never reach this subscriber.
        confirmed = threading.Event()
        other.bus.subscribe("payments:confirmed", on_message)
        other.bus.when_confirmed("payments:confirmed", confirmed.set)
        assert confirmed.wait(10)
        doc = create_payment(app, customer, tier_of(pay)).json["data"]
        send_callback(app, paid_body(doc))
        send_callback(app, paid_body(doc))
        assert done.wait(10)
        time.sleep(0.3)  # room for a second message, which must not come (the duplicate callback)
    finally:
        other.close()
    assert received == [doc["id"]]
