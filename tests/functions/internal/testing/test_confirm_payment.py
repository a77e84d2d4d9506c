"""The development confirm hook pays through the webhook path and exists only in dev and test."""

from __future__ import annotations

from dataclasses import replace

from falcon import testing

from lib.config.env import Settings
from lib.presence.state import set_online
from lib.transcripts import KeyRing
from runtime.app import create_app
from runtime.container import build_services
from tests.conftest import bearer
from tests.payflow import CREATE, TOKEN, payment_status, tier_of


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
        assert hook.status_code == 200 and hook.json["data"] == {"ok": True, "confirmed": True}
        assert payment_status(dev, doc["id"]) == "confirmed"
        assert dev.db.fetch_one("SELECT outcome FROM webhook_logs") == {"outcome": "confirmed"}
        absent = testing.TestClient(create_app("internal", prod)).simulate_post(
            f"/internal/_test/payments/{doc['id']}/confirm"
        )
        assert absent.status_code == 404
    finally:
        dev.close()
        prod.close()
