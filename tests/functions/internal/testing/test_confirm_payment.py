"""The development confirm hook pays through the webhook path and exists only in dev and test."""

from __future__ import annotations

from dataclasses import replace

from falcon import testing

from lib.config.env import Settings
from lib.presence.state import set_online
from lib.services import Services
from lib.transcripts import KeyRing
from runtime.app import create_app
from runtime.container import build_services
from tests.conftest import bearer
from tests.fakes import FakeXendit
from tests.payflow import CREATE, TOKEN, create_payment, payment_status, tier_of


def test_dev_confirm_hook_uses_the_webhook_path(settings: Settings, make_mitra, anonymous) -> None:
    dev = build_services(replace(settings, xendit_webhook_token=TOKEN))  # simulated gateway (XENDIT_ENABLED=false)
    prod = build_services(
        replace(settings, app_env="production", otp_allow_stub=True, chat_encryption_keys=KeyRing.generate("prod-1"))
    )
    try:
        public, internal = (
            testing.TestClient(create_app("public", dev)),
            testing.TestClient(create_app("internal", dev)),
        )
        mitra = make_mitra("+6281277700002", "Dev Bestie")
        set_online(dev.db, dev.valkey, str(mitra["id"]), True)
        pair = anonymous()
        tier = tier_of(dev)
        doc = public.simulate_post(
            CREATE, headers=bearer(pair["access_token"]), json={"mode": "chat", "tier_id": tier}
        ).json["data"]
        assert "simulated-invoices" in doc["invoice_url"]
        hook = internal.simulate_post(f"/internal/_test/payments/{doc['id']}/confirm")
        assert hook.status_code == 200
        assert hook.json["data"] == {"ok": True, "confirmed": True}
        assert payment_status(dev, doc["id"]) == "confirmed"
        assert dev.db.fetch_one("SELECT outcome FROM webhook_logs") == {"outcome": "confirmed"}
        absent = testing.TestClient(create_app("internal", prod)).simulate_post(
            f"/internal/_test/payments/{doc['id']}/confirm"
        )
        assert absent.status_code == 404
    finally:
        dev.close()
        prod.close()


def test_the_hook_refuses_to_run_with_the_real_gateway(
    pay: Services, app: testing.TestClient, xendit: FakeXendit, online_mitra, customer
) -> None:
    """Even in development or test: with XENDIT_ENABLED=true a request has a real invoice, and the
    hook must not turn it into a confirmed payment with the real webhook token."""
    assert pay.settings.is_dev_or_test
    assert pay.settings.xendit_enabled
    doc = create_payment(app, customer, tier_of(pay)).json["data"]
    assert len(xendit.created) == 1
    hook = testing.TestClient(create_app("internal", pay)).simulate_post(
        f"/internal/_test/payments/{doc['id']}/confirm"
    )
    assert hook.status_code == 403, hook.text
    assert hook.json["error"]["code"] == "SIMULATED_GATEWAY_ONLY"
    assert payment_status(pay, doc["id"]) == "pending"
    assert pay.db.fetch_one("SELECT count(*) AS n FROM webhook_logs") == {"n": 0}
