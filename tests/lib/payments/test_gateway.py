"""The Xendit gateway's retries."""

from __future__ import annotations

import time

import pytest

from tests.payflow import SECRET


def test_gateway_unreachable_retries_then_fails(pay_settings, online_mitra, customer) -> None:
    from lib.payments.gateway import GatewayError, XenditGateway
    from tests.helpers import free_port

    gateway = XenditGateway(f"http://127.0.0.1:{free_port()}", SECRET, attempts=2)
    started = time.monotonic()
    with pytest.raises(GatewayError):
        gateway.create_invoice(external_id="x", amount=1, description="d", duration_seconds=60)
    assert time.monotonic() - started < 5
