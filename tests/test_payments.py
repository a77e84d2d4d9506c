"""Payments against a local fake Xendit: creation, idempotency, the webhook, sweeps, the CC views."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from falcon import testing

from lib.config.env import Settings
from lib.payments.sweeps import expire_overdue, reconcile, recover_invoices, reemit_unpaired
from lib.presence.state import set_online
from lib.services import Services
from runtime.app import create_app
from runtime.container import build_services
from tests.conftest import PROJECT_ROOT, bearer
from tests.fakes import FakeXendit

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


def _tier(pay: Services, minutes: int = 15) -> str:
    row = pay.db.fetch_one("SELECT id FROM pricing_tiers WHERE mode = 'chat' AND minutes = %(m)s", {"m": minutes})
    assert row is not None
    return str(row["id"])


def _create(
    app: testing.TestClient, customer: dict[str, Any], tier: str, key: str | None = None, **extra: Any
) -> testing.Result:
    headers = bearer(customer["access_token"]) | ({"Idempotency-Key": key} if key else {})
    return app.simulate_post(CREATE, headers=headers, json={"mode": "chat", "tier_id": tier, **extra})


def _callback(app: testing.TestClient, body: dict[str, Any] | bytes, token: str | None = TOKEN) -> testing.Result:
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


def _paid(request: dict[str, Any], **over: Any) -> dict[str, Any]:
    base = json.loads(_FIXTURE.read_text()) if _FIXTURE.exists() else _PAID_SHAPE
    return {**base, "external_id": request["id"], "amount": request["amount"], "paid_amount": request["amount"], **over}


def _status(pay: Services, request_id: str) -> str:
    row = pay.db.fetch_one("SELECT status FROM payment_requests WHERE id = %(id)s", {"id": request_id})
    assert row is not None
    return str(row["status"])


def test_create_prices_server_side_and_opens_an_invoice(app, pay, xendit, online_mitra, customer) -> None:
    result = _create(app, customer, _tier(pay), topic_sensitivity="sensitive", amount=1)
    assert result.status_code == 201, result.text
    doc = result.json["data"]
    assert {"id", "status", "amount", "discount", "invoice_url", "expires_at"} <= set(doc)
    assert (doc["status"], doc["amount"], doc["discount"]) == ("pending", 30000, 0)
    assert doc["invoice_url"].startswith("https://checkout.xendit.test/")
    sent = xendit.created[0]
    assert sent["external_id"] == doc["id"] and sent["amount"] == 30000 and sent["currency"] == "IDR"
    assert sent["invoice_duration"] == 20 * 60 and sent["metadata"] == {"app": "halobestie_v2"}
    assert sent["success_redirect_url"] == "https://halobestie.id/paid"
    assert xendit.auth_seen[0] == xendit.expected_auth
    row = pay.db.fetch_one("SELECT expires_at - created_at AS valid FROM payment_requests")
    assert row is not None and abs(row["valid"].total_seconds() - 1200) < 2


def test_first_session_discount_is_applied(app, pay, online_mitra, customer) -> None:
    pay.db.execute("UPDATE pricing_promotions SET enabled = true, discount_type = 'amount', value = 5000")
    doc = _create(app, customer, _tier(pay)).json["data"]
    assert (doc["amount"], doc["discount"]) == (25000, 5000)


def test_tier_and_mode_are_checked(app, pay, online_mitra, customer) -> None:
    unknown = _create(app, customer, "00000000-0000-4000-8000-000000000000")
    assert unknown.status_code == 422 and unknown.json["error"]["code"] == "TIER_NOT_FOUND"
    wrong_mode = app.simulate_post(
        CREATE, headers=bearer(customer["access_token"]), json={"mode": "call", "tier_id": _tier(pay)}
    )
    assert wrong_mode.status_code == 422


def test_no_money_is_taken_when_nobody_can_answer(app, pay, xendit, make_mitra, customer) -> None:
    blast = _create(app, customer, _tier(pay))
    assert blast.status_code == 409 and blast.json["error"]["code"] == "NO_MITRA_AVAILABLE"
    offline = make_mitra("+6281277700009", "Offline")
    targeted = _create(app, customer, _tier(pay), targeted_mitra_id=str(offline["id"]))
    assert targeted.status_code == 409 and targeted.json["error"]["code"] == "MITRA_UNAVAILABLE"
    assert xendit.created == []


def test_one_open_request_per_customer_even_concurrently(app, pay, xendit, online_mitra, customer) -> None:
    with ThreadPoolExecutor(max_workers=5) as pool:
        results = list(pool.map(lambda _: _create(app, customer, _tier(pay)), range(5)))
    assert sorted(r.status_code for r in results) == [201, 409, 409, 409, 409]
    assert {r.json["error"]["code"] for r in results if r.status_code == 409} == {"ALREADY_ACTIVE"}
    assert len(xendit.created) == 1


def test_a_live_session_blocks_a_new_request(app, pay, online_mitra, customer) -> None:
    pay.db.execute(
        "INSERT INTO chat_sessions (customer_id, mitra_id, status) VALUES (%(c)s, %(m)s, 'active')",
        {"c": customer["user"]["id"], "m": online_mitra["id"]},
    )
    result = _create(app, customer, _tier(pay))
    assert result.status_code == 409 and result.json["error"]["code"] == "ALREADY_ACTIVE"


def test_idempotency_key_replay_and_mismatch(app, pay, xendit, online_mitra, customer) -> None:
    first = _create(app, customer, _tier(pay), key="key-0001-abcdef")
    again = _create(app, customer, _tier(pay), key="key-0001-abcdef")
    assert again.status_code == 201 and again.json == first.json
    other = _create(app, customer, _tier(pay, 30), key="key-0001-abcdef")
    assert other.status_code == 422 and other.json["error"]["code"] == "IDEMPOTENCY_MISMATCH"
    assert len(xendit.created) == 1
    bad_key = _create(app, customer, _tier(pay), key="short")
    assert bad_key.status_code == 422


def test_concurrent_duplicates_create_one_request_and_one_invoice(app, pay, xendit, online_mitra, customer) -> None:
    xendit.delay = 0.4  # keep the first call inside the gateway while the others arrive
    with ThreadPoolExecutor(max_workers=5) as pool:
        results = list(pool.map(lambda _: _create(app, customer, _tier(pay), key="same-key-123456"), range(5)))
    codes = sorted(r.status_code for r in results)
    assert codes.count(201) >= 1 and set(codes) <= {201, 409}
    assert {r.json["error"]["code"] for r in results if r.status_code == 409} <= {"IDEMPOTENCY_IN_PROGRESS"}
    assert len({r.json["data"]["id"] for r in results if r.status_code == 201}) == 1
    assert len(xendit.created) == 1
    assert pay.db.fetch_one("SELECT count(*) AS n FROM payment_requests") == {"n": 1}


def test_gateway_failure_leaves_nothing_behind(app, pay, xendit, online_mitra, customer) -> None:
    xendit.fail_next = 1
    failed = _create(app, customer, _tier(pay))
    assert failed.status_code == 502 and failed.json["error"]["code"] == "PAYMENT_GATEWAY_ERROR"
    assert pay.db.fetch_one("SELECT count(*) AS n FROM payment_requests") == {"n": 0}
    assert _create(app, customer, _tier(pay)).status_code == 201


@pytest.fixture
def slow_xendit(pay_settings: Settings, xendit: FakeXendit) -> Iterator[tuple[testing.TestClient, Services]]:
    """Xendit creates the invoice but answers after our client has given up waiting."""
    xendit.create_answer_delay = 1.0
    svc = build_services(replace(pay_settings, xendit_timeout_seconds=0.3), application_name="payments-slow")
    yield testing.TestClient(create_app("public", svc)), svc
    svc.close()


def test_a_timed_out_create_recovers_the_invoice_by_external_id(slow_xendit, xendit, online_mitra, customer) -> None:
    app, svc = slow_xendit
    result = _create(app, customer, _tier(svc), key="timeout-key-1")
    assert result.status_code == 201, result.text
    doc = result.json["data"]
    assert len(xendit.created) == 1  # looked up, never created twice
    invoice = next(iter(xendit.invoices.values()))
    assert invoice["external_id"] == doc["id"] and doc["invoice_url"] == invoice["invoice_url"]
    assert _status(svc, doc["id"]) == "pending"


def test_a_timed_out_create_keeps_the_request_until_paid(slow_xendit, xendit, online_mitra, customer) -> None:
    app, svc = slow_xendit
    xendit.lookups_fail = True
    result = _create(app, customer, _tier(svc), key="timeout-key-2")
    assert result.status_code == 502 and result.json["error"]["code"] == "PAYMENT_GATEWAY_ERROR"
    request_id = result.json["error"]["details"]["payment_request_id"]
    row = svc.db.fetch_one("SELECT status, invoice_url FROM payment_requests WHERE id = %(id)s", {"id": request_id})
    assert row == {"status": "pending", "invoice_url": None}  # kept: Xendit may hold an invoice for it
    replay = _create(app, customer, _tier(svc), key="timeout-key-2")
    assert replay.status_code == 409 and replay.json["error"]["code"] == "IDEMPOTENCY_IN_PROGRESS"
    assert len(xendit.created) == 1

    assert recover_invoices(svc.db, svc.payment_gateway) == {}  # too young: its create call may still be running
    svc.db.execute("UPDATE payment_requests SET created_at = now() - interval '20 seconds'")
    assert recover_invoices(svc.db, svc.payment_gateway) == {request_id: "gateway_error"}
    xendit.lookups_fail = False
    svc.db.execute("UPDATE payment_requests SET last_reconciled_at = now() - interval '1 minute'")
    assert recover_invoices(svc.db, svc.payment_gateway) == {request_id: "recovered"}
    replayed = _create(app, customer, _tier(svc), key="timeout-key-2")
    assert replayed.status_code == 201 and replayed.json["data"]["invoice_url"].startswith("https://checkout")
    assert len(xendit.created) == 1
    paid = _callback(app, _paid({"id": request_id, "amount": replayed.json["data"]["amount"]}))
    assert paid.json == {"ok": True, "confirmed": True}


def test_a_paid_callback_confirms_a_request_whose_invoice_was_never_seen(
    slow_xendit, xendit, online_mitra, customer
) -> None:
    app, svc = slow_xendit
    xendit.lookups_fail = True
    result = _create(app, customer, _tier(svc))
    request_id = result.json["error"]["details"]["payment_request_id"]
    amount = next(iter(xendit.invoices.values()))["amount"]
    assert _callback(app, _paid({"id": request_id, "amount": amount})).json == {"ok": True, "confirmed": True}
    assert _status(svc, request_id) == "confirmed"


def test_recovery_expires_a_request_xendit_never_created(app, pay, xendit, online_mitra, customer) -> None:
    doc = _create(app, customer, _tier(pay)).json["data"]
    # As if the process had died after the insert and before its create call reached Xendit.
    pay.db.execute("UPDATE payment_requests SET invoice_url = NULL, xendit_invoice_id = NULL")
    xendit.invoices.clear()
    pay.db.execute("UPDATE payment_requests SET created_at = now() - interval '30 seconds'")
    assert recover_invoices(pay.db, pay.payment_gateway) == {doc["id"]: "not_found_yet"}
    assert expire_overdue(pay.db) == []  # an invoice-less request is not expired by age alone
    pay.db.execute("UPDATE payment_requests SET created_at = now() - interval '3 minutes', last_reconciled_at = NULL")
    assert recover_invoices(pay.db, pay.payment_gateway) == {doc["id"]: "expired"}
    assert _create(app, customer, _tier(pay)).status_code == 201  # the customer is free to pay again


def test_gateway_unreachable_retries_then_fails(pay_settings, online_mitra, customer) -> None:
    from lib.payments.gateway import GatewayError, XenditGateway
    from tests.helpers import free_port

    gateway = XenditGateway(f"http://127.0.0.1:{free_port()}", SECRET, attempts=2)
    started = time.monotonic()
    with pytest.raises(GatewayError):
        gateway.create_invoice(external_id="x", amount=1, description="d", duration_seconds=60)
    assert time.monotonic() - started < 5


def test_reads_and_abandon(app, pay, online_mitra, customer, anonymous) -> None:
    doc = _create(app, customer, _tier(pay)).json["data"]
    token = bearer(customer["access_token"])
    assert [r["id"] for r in app.simulate_get(f"{CREATE}/pending", headers=token).json["data"]["items"]] == [doc["id"]]
    assert app.simulate_get(f"{CREATE}/{doc['id']}", headers=token).json["data"]["session_id"] is None
    stranger = bearer(anonymous()["access_token"])
    assert app.simulate_get(f"{CREATE}/{doc['id']}", headers=stranger).status_code == 404
    assert app.simulate_post(f"{CREATE}/{doc['id']}/abandon", headers=stranger).status_code == 404
    abandoned = app.simulate_post(f"{CREATE}/{doc['id']}/abandon", headers=token)
    assert abandoned.status_code == 200 and abandoned.json["data"]["status"] == "abandoned"
    again = app.simulate_post(f"{CREATE}/{doc['id']}/abandon", headers=token)
    assert again.status_code == 409 and again.json["error"]["code"] == "PAYMENT_NOT_PENDING"
    assert app.simulate_get(f"{CREATE}/pending", headers=token).json["data"]["items"] == []


def test_webhook_refuses_a_wrong_or_missing_token(app, pay, online_mitra, customer) -> None:
    doc = _create(app, customer, _tier(pay)).json["data"]
    for token in ("wrong-token", None, ""):
        result = _callback(app, _paid(doc), token)
        assert result.status_code == 401
    assert _status(pay, doc["id"]) == "pending"
    logs = pay.db.fetch_all("SELECT outcome, raw_body FROM webhook_logs ORDER BY id")
    assert [r["outcome"] for r in logs] == ["unauthorized"] * 3
    assert json.loads(logs[0]["raw_body"])["external_id"] == doc["id"]  # verbatim, before any auth


def test_same_paid_callback_ten_times_confirms_once(app, pay, online_mitra, customer, confirmed_events) -> None:
    doc = _create(app, customer, _tier(pay)).json["data"]
    body = _paid(doc)
    with ThreadPoolExecutor(max_workers=5) as pool:
        concurrent = list(pool.map(lambda _: _callback(app, body), range(5)))
    sequential = [_callback(app, body) for _ in range(5)]
    results = concurrent + sequential
    assert all(r.status_code == 200 and r.json["ok"] is True for r in results)
    assert sum(1 for r in results if r.json.get("confirmed")) == 1
    assert confirmed_events == [doc["id"]]
    assert pay.db.fetch_one("SELECT count(*) AS n FROM webhook_logs") == {"n": 10}
    outcomes = [r["outcome"] for r in pay.db.fetch_all("SELECT outcome FROM webhook_logs")]
    assert outcomes.count("confirmed") == 1 and outcomes.count("duplicate") == 9
    row = pay.db.fetch_one("SELECT status, paid_amount, payment_channel FROM payment_requests")
    assert row == {"status": "confirmed", "paid_amount": doc["amount"], "payment_channel": "QRIS"}


def test_expired_after_paid_changes_nothing(app, pay, online_mitra, customer) -> None:
    doc = _create(app, customer, _tier(pay)).json["data"]
    _callback(app, _paid(doc))
    result = _callback(app, _paid(doc, status="EXPIRED"))
    assert result.status_code == 200 and result.json == {"ok": True, "ignored": "ignored_expired_not_pending"}
    assert _status(pay, doc["id"]) == "confirmed"


def test_expired_callback_expires_a_pending_request(app, pay, online_mitra, customer) -> None:
    doc = _create(app, customer, _tier(pay)).json["data"]
    assert _callback(app, _paid(doc, status="EXPIRED")).json == {"ok": True, "expired": True}
    assert _status(pay, doc["id"]) == "expired"


def test_amount_mismatch_is_quarantined(app, pay, online_mitra, customer, confirmed_events, caplog) -> None:
    doc = _create(app, customer, _tier(pay)).json["data"]
    with caplog.at_level(logging.ERROR):
        result = _callback(app, _paid(doc, amount=1000, paid_amount=1000))
    assert result.status_code == 200 and result.json == {"ok": True, "quarantined": True}
    assert _status(pay, doc["id"]) == "pending" and confirmed_events == []
    assert "[ALERT]" in caplog.text
    usd = _callback(app, _paid(doc, currency="USD"))
    assert usd.json == {"ok": True, "quarantined": True}


def test_non_uuid_unknown_and_other_statuses_are_acked(app, pay, online_mitra, customer) -> None:
    old = _callback(app, {"external_id": "order-2019-0001", "status": "PAID", "amount": 5})
    assert old.json == {"ok": True, "ignored": "ignored_non_uuid_external_id"}
    unknown = _callback(
        app, {"external_id": "00000000-0000-4000-8000-000000000000", "status": "PAID", "amount": 5, "currency": "IDR"}
    )
    assert unknown.json == {"ok": True, "ignored": "unknown_payment_request"}
    doc = _create(app, customer, _tier(pay)).json["data"]
    other = _callback(app, _paid(doc, status="PENDING"))
    assert other.json == {"ok": True, "ignored": "PENDING"}
    huge = _callback(app, b"x" * (65 * 1024))
    assert huge.status_code == 413


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"PAID"', b"\xff\xfe"])
def test_a_body_that_is_not_a_json_object_is_400_after_logging(app, pay, raw: bytes) -> None:
    refused = _callback(app, raw, token="wrong")
    assert refused.status_code == 401  # the token is still checked first
    garbage = _callback(app, raw)
    assert garbage.status_code == 400 and garbage.json == {"ok": False, "error": "malformed_body"}
    logs = pay.db.fetch_all("SELECT outcome, raw_body FROM webhook_logs ORDER BY id")
    assert [(r["outcome"], bytes(r["raw_body"])) for r in logs] == [("unauthorized", raw), ("malformed_body", raw)]


def test_fallback_sink_when_the_log_insert_fails(pay_settings, tmp_path: Path) -> None:
    from tests.helpers import free_port

    down = replace(
        pay_settings,
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/x",
        db_pool_timeout=0.5,
        xendit_webhook_fallback_enabled=True,
        xendit_webhook_fallback_dir=str(tmp_path),
        xendit_webhook_fallback_name="sink",
    )
    svc = build_services(down)
    try:
        client = testing.TestClient(create_app("public", svc))
        body = {"external_id": "00000000-0000-4000-8000-000000000001", "status": "PAID", "amount": 30000}
        result = _callback(client, body)
        assert result.status_code == 503 and "Retry-After" in result.headers
        unauthorized = _callback(client, body, "wrong")
        assert unauthorized.status_code == 401
    finally:
        svc.close()
    files = list(tmp_path.glob("sink-*.jsonl"))
    assert len(files) == 1 and files[0].name == f"sink-{time.strftime('%Y-%m-%d', time.gmtime())}.jsonl"
    lines = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert len(lines) == 2 and json.loads(lines[0]["raw_body"]) == body
    assert TOKEN not in files[0].read_text()


def test_expiry_job(app, pay, online_mitra, customer) -> None:
    doc = _create(app, customer, _tier(pay)).json["data"]
    assert expire_overdue(pay.db) == []
    pay.db.execute("UPDATE payment_requests SET expires_at = now() - interval '1 second'")
    assert expire_overdue(pay.db) == [doc["id"]]
    assert _status(pay, doc["id"]) == "expired"
    # A payment that arrives after our expiry is still money received: it confirms.
    assert _callback(app, _paid(doc)).json == {"ok": True, "confirmed": True}


def test_reconcile_job_asks_xendit(app, pay, xendit, online_mitra, customer, confirmed_events, anonymous) -> None:
    doc = _create(app, customer, _tier(pay)).json["data"]
    other = anonymous()
    doc2 = _create(app, other, _tier(pay)).json["data"]
    assert reconcile(pay.db, pay.payment_gateway, pay.payment_events) == {}  # too young to bother Xendit
    pay.db.execute("UPDATE payment_requests SET created_at = now() - interval '4 minutes'")
    invoice1 = pay.db.fetch_one("SELECT xendit_invoice_id FROM payment_requests WHERE id = %(id)s", {"id": doc["id"]})
    invoice2 = pay.db.fetch_one("SELECT xendit_invoice_id FROM payment_requests WHERE id = %(id)s", {"id": doc2["id"]})
    assert invoice1 and invoice2
    xendit.set_status(invoice1["xendit_invoice_id"], "PAID", paid_amount=doc["amount"], payment_channel="QRIS")
    xendit.set_status(invoice2["xendit_invoice_id"], "EXPIRED")
    assert reconcile(pay.db, pay.payment_gateway, pay.payment_events) == {doc["id"]: "confirmed", doc2["id"]: "expired"}
    assert confirmed_events == [doc["id"]]
    assert reconcile(pay.db, pay.payment_gateway, pay.payment_events) == {}  # nothing pending any more


def test_reemit_job(app, pay, online_mitra, customer, confirmed_events) -> None:
    doc = _create(app, customer, _tier(pay)).json["data"]
    _callback(app, _paid(doc))
    assert reemit_unpaired(pay.db, pay.payment_events) == []  # too recent
    pay.db.execute("UPDATE payment_requests SET confirmed_at = now() - interval '1 minute'")
    assert reemit_unpaired(pay.db, pay.payment_events) == [doc["id"]]
    assert reemit_unpaired(pay.db, pay.payment_events) == []  # not again right away
    assert confirmed_events == [doc["id"], doc["id"]]


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
        doc = _create(app, customer, _tier(pay)).json["data"]
        _callback(app, _paid(doc))
        _callback(app, _paid(doc))
        assert done.wait(2)
        time.sleep(0.3)
    finally:
        other.close()
    assert received == [doc["id"]]


def test_dev_confirm_hook_uses_the_webhook_path(settings: Settings, make_mitra, anonymous) -> None:
    dev = build_services(replace(settings, xendit_webhook_token=TOKEN))  # simulated gateway (XENDIT_ENABLED=false)
    prod = build_services(replace(settings, app_env="production", otp_allow_stub=True))
    try:
        public, internal = (
            testing.TestClient(create_app("public", dev)),
            testing.TestClient(create_app("internal", dev)),
        )
        mitra = make_mitra("+6281277700002", "Dev Bestie")
        set_online(dev.db, dev.valkey, str(mitra["id"]), True)
        pair = anonymous()
        tier = _tier(dev)
        doc = public.simulate_post(
            CREATE, headers=bearer(pair["access_token"]), json={"mode": "chat", "tier_id": tier}
        ).json["data"]
        assert "simulated-invoices" in doc["invoice_url"]
        hook = internal.simulate_post(f"/internal/_test/payments/{doc['id']}/confirm")
        assert hook.status_code == 200 and hook.json["data"] == {"ok": True, "confirmed": True}
        assert _status(dev, doc["id"]) == "confirmed"
        assert dev.db.fetch_one("SELECT outcome FROM webhook_logs") == {"outcome": "confirmed"}
        absent = testing.TestClient(create_app("internal", prod)).simulate_post(
            f"/internal/_test/payments/{doc['id']}/confirm"
        )
        assert absent.status_code == 404
    finally:
        dev.close()
        prod.close()


def test_control_center_views(app, pay, online_mitra, customer, internal, cc_login) -> None:
    _, admin, _ = cc_login("admin")
    _, operator, _ = cc_login("operator")
    doc = _create(app, customer, _tier(pay)).json["data"]
    _callback(app, _paid(doc))
    listed = internal.simulate_get(
        "/internal/payment-requests", headers=bearer(operator), params={"status": "confirmed"}
    )
    assert [r["id"] for r in listed.json["data"]["items"]] == [doc["id"]]
    detail = internal.simulate_get(f"/internal/payment-requests/{doc['id']}", headers=bearer(operator)).json["data"]
    assert detail["customer_id"] == customer["user"]["id"] and detail["webhooks"][0]["outcome"] == "confirmed"
    logs = internal.simulate_get("/internal/webhook-logs", headers=bearer(operator), params={"external_id": doc["id"]})
    item = logs.json["data"]["items"][0]
    assert item["external_id"] == doc["id"] and "raw_body" not in item
    one = internal.simulate_get(f"/internal/webhook-logs/{item['id']}", headers=bearer(operator)).json["data"]
    assert json.loads(one["raw_body"])["external_id"] == doc["id"]
    pay.db.execute("UPDATE payment_requests SET status = 'failed_pairing', failure_cause = 'blast_timeout'")
    failure = pay.db.fetch_one(
        "INSERT INTO pairing_failures (payment_request_id, customer_id, cause) "
        "VALUES (%(p)s, %(c)s, 'blast_timeout') RETURNING id",
        {"p": doc["id"], "c": customer["user"]["id"]},
    )
    assert failure is not None
    assert internal.simulate_get("/internal/failed-pairings", headers=bearer(operator)).status_code == 403
    listed = internal.simulate_get("/internal/failed-pairings", headers=bearer(admin), params={"review_status": "open"})
    assert [f["id"] for f in listed.json["data"]["items"]] == [str(failure["id"])]
    patched = internal.simulate_patch(
        f"/internal/failed-pairings/{failure['id']}",
        headers=bearer(admin),
        json={"review_status": "refunded", "notes": "refunded via dashboard"},
    )
    assert patched.json["data"]["review_status"] == "refunded"
    bad = internal.simulate_patch(
        f"/internal/failed-pairings/{failure['id']}", headers=bearer(admin), json={"review_status": "lost"}
    )
    assert bad.status_code == 422
