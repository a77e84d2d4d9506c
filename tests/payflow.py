"""Payment fixtures and helpers shared by the payment, pairing and session tests: a fake Xendit,
services and an app configured for it, a mitra online, a customer, and the steps of a payment."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from falcon import testing

from lib.clock import utcnow
from lib.config.env import Settings
from lib.jobs import JobCtx
from lib.payments.reconciliation import Report
from lib.payments.reconciliation import report as money_report
from lib.presence.state import set_online
from lib.services import Services
from runtime.app import create_app
from runtime.container import build_services
from runtime.worker import discover_jobs
from tests.conftest import PROJECT_ROOT, bearer
from tests.fakes import FakeXendit
from tests.helpers import process_env

SECRET, TOKEN = "xnd_development_secret", "callback-token-for-tests"
CREATE, WEBHOOK = "/api/client/payment-requests", "/api/shared/payment/webhooks/xendit"


@pytest.fixture
def xendit() -> Iterator[FakeXendit]:
    fake = FakeXendit(SECRET)
    with fake.running():
        yield fake


@pytest.fixture
def pay_settings(settings: Settings, xendit: FakeXendit) -> Settings:
    return replace(
        settings,
        xendit_enabled=True,
        xendit_secret_key=SECRET,
        xendit_webhook_token=TOKEN,
        xendit_base_url=xendit.url,
        xendit_success_redirect_url="https://halobestie.id/paid",
    )


def xendit_env(settings: Settings, xendit: FakeXendit, **extra: str) -> dict[str, str]:
    """A server process's environment with `pay_settings`' payment settings (tests.helpers.process_env)."""
    return process_env(
        settings,
        XENDIT_ENABLED="true",
        XENDIT_SECRET_KEY=SECRET,
        XENDIT_WEBHOOK_TOKEN=TOKEN,
        XENDIT_BASE_URL=xendit.url,
        XENDIT_SUCCESS_REDIRECT_URL="https://halobestie.id/paid",
        **extra,
    )


@pytest.fixture
def pay(pay_settings: Settings) -> Iterator[Services]:
    svc = build_services(pay_settings, application_name="payments-test")
    yield svc
    svc.close()


@pytest.fixture
def app(pay: Services) -> testing.TestClient:
    return testing.TestClient(create_app("public", pay))


@pytest.fixture
def confirmed_events(pay: Services) -> list[str]:
    seen: list[str] = []
    pay.payment_events.on_confirmed(seen.append)
    return seen


@pytest.fixture
def online_mitra(pay: Services, make_mitra) -> dict[str, Any]:
    mitra = make_mitra("+6281277700001", "Bestie Online")
    set_online(pay.db, pay.valkey, str(mitra["id"]), True)
    return dict(mitra)


@pytest.fixture
def customer(anonymous) -> dict[str, Any]:
    pair: dict[str, Any] = anonymous("Pembeli")
    return pair


def tier_of(pay: Services, minutes: int = 15) -> str:
    row = pay.db.fetch_one("SELECT id FROM pricing_tiers WHERE mode = 'chat' AND minutes = %(m)s", {"m": minutes})
    assert row is not None
    return str(row["id"])


def create_payment(
    app: testing.TestClient, customer: dict[str, Any], tier: str, key: str | None = None, **extra: Any
) -> testing.Result:
    headers = bearer(customer["access_token"]) | ({"Idempotency-Key": key} if key else {})
    return app.simulate_post(CREATE, headers=headers, json={"mode": "chat", "tier_id": tier, **extra})


def send_callback(app: testing.TestClient, body: dict[str, Any] | bytes, token: str | None = TOKEN) -> testing.Result:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} | ({"x-callback-token": token} if token is not None else {})
    return app.simulate_post(WEBHOOK, body=raw, headers=headers)


_FIXTURE = PROJECT_ROOT.parent / "shared" / "fixtures" / "xendit" / "invoice_paid.json"
# The shape of ../shared/fixtures/xendit/invoice_paid.json, for a checkout without shared/ beside it.
_PAID_SHAPE = {
    "id": "665f1c2a9b1e4a0012345678",
    "status": "PAID",
    "currency": "IDR",
    "payment_method": "QR_CODE",
    "payment_channel": "QRIS",
    "metadata": {"app": "halobestie_v2"},
}


def paid_body(request: dict[str, Any], **over: Any) -> dict[str, Any]:
    base = json.loads(_FIXTURE.read_text()) if _FIXTURE.exists() else _PAID_SHAPE
    return {**base, "external_id": request["id"], "amount": request["amount"], "paid_amount": request["amount"], **over}


def payment_status(pay: Services, request_id: str) -> str:
    row = pay.db.fetch_one("SELECT status FROM payment_requests WHERE id = %(id)s", {"id": request_id})
    assert row is not None
    return str(row["status"])


@pytest.fixture
def slow_xendit(pay_settings: Settings, xendit: FakeXendit) -> Iterator[tuple[testing.TestClient, Services]]:
    """Xendit creates the invoice but answers after our client has given up waiting."""
    xendit.create_answer_delay = 1.0
    svc = build_services(replace(pay_settings, xendit_timeout_seconds=0.3), application_name="payments-slow")
    yield testing.TestClient(create_app("public", svc)), svc
    svc.close()


def xendit_says(xendit: FakeXendit, request_id: str, **over: Any) -> dict[str, Any]:
    """The callback body Xendit posts for this request's invoice as it stands now (its own shape)."""
    return {**xendit.invoice_of(request_id), **over}


def pay_at_xendit(xendit: FakeXendit, request_id: str, status: str = "PAID") -> dict[str, Any]:
    """The customer pays at Xendit's checkout; the callback body (post it with send_callback, or lose it)."""
    return xendit.pay(request_id, status=status)


def run_job(svc: Services, name: str) -> None:
    """One tick of a worker job, as the worker runs it."""
    module = next(j for j in discover_jobs() if j.name == name).module
    module.run(JobCtx(svc, logging.getLogger("test"), utcnow))


def accounted(svc: Services) -> Report:
    """The reconciliation's report, asserting that every paid invoice is in exactly one place."""
    report = money_report(svc.db)
    assert report.problems == [], report.problems
    return report
