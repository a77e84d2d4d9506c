"""The payment_close job: invoices we gave up on are expired at Xendit through a retried outbox. An
outage or a timeout delays a closure (backoff) and never loses it; an invoice found paid is settled
exactly as its callback would have been; an invoice never seen is looked up by our id first."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from falcon import testing

from lib.config.env import Settings
from lib.services import Services
from runtime.app import create_app
from runtime.container import build_services
from tests.chatflow import Chat
from tests.conftest import bearer
from tests.fakes import FakeXendit
from tests.payflow import CREATE, accounted, create_payment, pay_at_xendit, run_job, send_callback, tier_of


def _abandoned(app: testing.TestClient, svc: Services, customer: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = create_payment(app, customer, tier_of(svc)).json["data"]
    abandoned = app.simulate_post(f"{CREATE}/{doc['id']}/abandon", headers=bearer(customer["access_token"]))
    assert abandoned.status_code == 200
    return doc


def _closure(svc: Services) -> dict[str, Any]:
    row = svc.db.fetch_one(
        "SELECT attempts, closed_at, outcome, last_error, "
        "round(extract(epoch FROM next_attempt_at - now())) AS wait FROM invoice_closures"
    )
    assert row is not None
    return row


def _due_again(svc: Services) -> None:
    svc.db.execute("UPDATE invoice_closures SET next_attempt_at = now()")


def test_an_outage_delays_the_closure_with_a_growing_backoff(
    app, pay, xendit: FakeXendit, online_mitra, customer
) -> None:
    doc = _abandoned(app, pay, customer)
    xendit.fail_next = 2
    run_job(pay, "payment_close")
    first = _closure(pay)
    assert (first["attempts"], first["closed_at"], first["last_error"]) == (1, None, "PAYMENT_GATEWAY_ERROR")
    assert 25 <= first["wait"] <= 30
    run_job(pay, "payment_close")  # not due yet: Xendit is not asked
    assert xendit.started == 2  # the create, and the one failed attempt
    _due_again(pay)
    run_job(pay, "payment_close")
    second = _closure(pay)
    assert second["attempts"] == 2
    assert 55 <= second["wait"] <= 60
    assert second["closed_at"] is None
    _due_again(pay)
    run_job(pay, "payment_close")
    done = _closure(pay)
    assert done["outcome"] == "expired"
    assert done["closed_at"] is not None
    assert done["last_error"] is None
    assert xendit.invoice_of(doc["id"])["status"] == "EXPIRED"
    row = pay.db.fetch_one("SELECT invoice_closed_at FROM payment_requests")
    assert row is not None
    assert row["invoice_closed_at"] is not None


@pytest.fixture
def impatient(pay_settings: Settings, xendit: FakeXendit) -> Iterator[tuple[testing.TestClient, Services]]:
    """Our Xendit client gives up after 0.3 s."""
    svc = build_services(replace(pay_settings, xendit_timeout_seconds=0.3), application_name="payments-impatient")
    yield testing.TestClient(create_app("public", svc)), svc
    svc.close()


def test_a_timeout_is_not_a_failure_the_next_attempt_tells(
    impatient, xendit: FakeXendit, online_mitra, customer
) -> None:
    app, svc = impatient
    doc = _abandoned(app, svc, customer)
    xendit.expire_answer_delay = 1.0  # Xendit expires the invoice, then answers too late
    run_job(svc, "payment_close")
    kept = _closure(svc)
    assert kept["closed_at"] is None
    assert kept["attempts"] == 1
    assert kept["last_error"] == "PAYMENT_GATEWAY_ERROR"
    xendit.expire_answer_delay = 0.0
    _due_again(svc)
    run_job(svc, "payment_close")  # Xendit: already expired (404), then GET: EXPIRED
    assert _closure(svc)["outcome"] == "already_expired"
    assert xendit.invoice_of(doc["id"])["status"] == "EXPIRED"
    accounted(svc)


def test_an_invoice_found_paid_when_closing_is_settled_like_its_callback(chat: Chat, xendit: FakeXendit) -> None:
    _, token = chat.mitra()
    customer = chat.customer()
    doc = _abandoned(chat.app, chat.pay, customer)
    body = pay_at_xendit(xendit, doc["id"])  # paid in another tab; the callback is still on its way
    run_job(chat.pay, "payment_close")
    assert _closure(chat.pay)["outcome"] == "paid"
    assert chat.payment_status(doc) == "confirmed"  # nothing else open: served
    assert chat.accept(token, chat.session_of(doc)).status_code == 200
    assert send_callback(chat.app, body).json == {"ok": True, "duplicate": True}
    source = chat.pay.db.fetch_one("SELECT source FROM paid_invoices")
    assert source == {"source": "close"}
    accounted(chat.pay)


def test_an_invoice_never_seen_is_looked_up_by_our_id(slow_xendit, xendit: FakeXendit, online_mitra, customer) -> None:
    app, svc = slow_xendit
    xendit.lookups_fail = True  # the create timed out and the lookup failed: no invoice known to us
    failed = create_payment(app, customer, tier_of(svc))
    request_id = failed.json["error"]["details"]["payment_request_id"]
    abandoned = app.simulate_post(f"{CREATE}/{request_id}/abandon", headers=bearer(customer["access_token"]))
    assert abandoned.status_code == 200
    xendit.lookups_fail = False
    run_job(svc, "payment_close")
    invoice = xendit.invoice_of(request_id)
    assert invoice["status"] == "EXPIRED"
    assert _closure(svc)["outcome"] == "expired"
    row = svc.db.fetch_one("SELECT xendit_invoice_id FROM payment_requests")
    assert row == {"xendit_invoice_id": invoice["id"]}


def test_a_request_xendit_never_created_an_invoice_for_closes_nothing(
    app, pay, xendit: FakeXendit, online_mitra, customer
) -> None:
    doc = create_payment(app, customer, tier_of(pay)).json["data"]
    pay.db.execute("UPDATE payment_requests SET invoice_url = NULL, xendit_invoice_id = NULL")
    xendit.invoices.clear()
    app.simulate_post(f"{CREATE}/{doc['id']}/abandon", headers=bearer(customer["access_token"]))
    run_job(pay, "payment_close")
    assert _closure(pay)["last_error"] == "not_found"  # young: an invoice could still appear
    pay.db.execute("UPDATE payment_requests SET created_at = now() - interval '3 minutes'")
    _due_again(pay)
    run_job(pay, "payment_close")
    assert _closure(pay)["outcome"] == "no_invoice"
