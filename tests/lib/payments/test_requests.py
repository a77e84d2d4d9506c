"""Payment requests against a local fake Xendit: server-side price, one open request,
Idempotency-Key, gateway failures and time-outs, reads and abandon."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from falcon import testing

from lib.config.env import Settings
from lib.payments.sweeps import recover_invoices
from runtime.app import create_app
from runtime.container import build_services
from tests.conftest import bearer
from tests.fakes import FakeXendit
from tests.payflow import CREATE, create_payment, paid_body, payment_status, send_callback, tier_of


def test_create_prices_server_side_and_opens_an_invoice(app, pay, xendit, online_mitra, customer) -> None:
    result = create_payment(app, customer, tier_of(pay), topic_sensitivity="sensitive", amount=1)
    assert result.status_code == 201, result.text
    doc = result.json["data"]
    assert {"id", "status", "amount", "discount", "invoice_url", "expires_at"} <= set(doc)
    assert (doc["status"], doc["amount"], doc["discount"]) == ("pending", 30000, 0)
    assert doc["invoice_url"].startswith("https://checkout.xendit.test/")
    sent = xendit.created[0]
    assert sent["external_id"] == doc["id"]
    assert sent["amount"] == 30000
    assert sent["currency"] == "IDR"
    assert sent["invoice_duration"] == 20 * 60
    assert sent["metadata"] == {"app": "halobestie_v2"}
    assert sent["success_redirect_url"] == "https://halobestie.id/paid"
    assert xendit.auth_seen[0] == xendit.expected_auth
    row = pay.db.fetch_one("SELECT expires_at - created_at AS valid FROM payment_requests")
    assert row is not None
    assert abs(row["valid"].total_seconds() - 1200) < 2


def test_first_session_discount_is_applied(app, pay, online_mitra, customer) -> None:
    pay.db.execute("UPDATE pricing_promotions SET enabled = true, discount_type = 'amount', value = 5000")
    doc = create_payment(app, customer, tier_of(pay)).json["data"]
    assert (doc["amount"], doc["discount"]) == (25000, 5000)


def test_tier_and_mode_are_checked(app, pay, online_mitra, customer) -> None:
    unknown = create_payment(app, customer, "00000000-0000-4000-8000-000000000000")
    assert unknown.status_code == 422
    assert unknown.json["error"]["code"] == "TIER_NOT_FOUND"
    wrong_mode = app.simulate_post(
        CREATE, headers=bearer(customer["access_token"]), json={"mode": "call", "tier_id": tier_of(pay)}
    )
    assert wrong_mode.status_code == 422


def test_no_money_is_taken_when_nobody_can_answer(app, pay, xendit, make_mitra, customer) -> None:
    blast = create_payment(app, customer, tier_of(pay))
    assert blast.status_code == 409
    assert blast.json["error"]["code"] == "NO_MITRA_AVAILABLE"
    offline = make_mitra("+6281277700009", "Offline")
    targeted = create_payment(app, customer, tier_of(pay), targeted_mitra_id=str(offline["id"]))
    assert targeted.status_code == 409
    assert targeted.json["error"]["code"] == "MITRA_UNAVAILABLE"
    assert xendit.created == []


def test_one_open_request_per_customer_even_concurrently(app, pay, xendit, online_mitra, customer) -> None:
    with ThreadPoolExecutor(max_workers=5) as pool:
        results = list(pool.map(lambda _: create_payment(app, customer, tier_of(pay)), range(5)))
    assert sorted(r.status_code for r in results) == [201, 409, 409, 409, 409]
    assert {r.json["error"]["code"] for r in results if r.status_code == 409} == {"ALREADY_ACTIVE"}
    assert len(xendit.created) == 1


def test_a_live_session_blocks_a_new_request(app, pay, online_mitra, customer) -> None:
    pay.db.execute(
        "INSERT INTO chat_sessions (customer_id, mitra_id, status) VALUES (%(c)s, %(m)s, 'active')",
        {"c": customer["user"]["id"], "m": online_mitra["id"]},
    )
    result = create_payment(app, customer, tier_of(pay))
    assert result.status_code == 409
    assert result.json["error"]["code"] == "ALREADY_ACTIVE"


def test_idempotency_key_replay_and_mismatch(app, pay, xendit, online_mitra, customer) -> None:
    first = create_payment(app, customer, tier_of(pay), key="key-0001-abcdef")
    again = create_payment(app, customer, tier_of(pay), key="key-0001-abcdef")
    assert again.status_code == 201
    assert again.json == first.json
    other = create_payment(app, customer, tier_of(pay, 30), key="key-0001-abcdef")
    assert other.status_code == 422
    assert other.json["error"]["code"] == "IDEMPOTENCY_MISMATCH"
    assert len(xendit.created) == 1
    bad_key = create_payment(app, customer, tier_of(pay), key="short")
    assert bad_key.status_code == 422


def test_concurrent_duplicates_create_one_request_and_one_invoice(app, pay, xendit, online_mitra, customer) -> None:
    xendit.delay = 0.4  # keep the first call inside the gateway while the others arrive
    with ThreadPoolExecutor(max_workers=5) as pool:
        results = list(pool.map(lambda _: create_payment(app, customer, tier_of(pay), key="same-key-123456"), range(5)))
    codes = sorted(r.status_code for r in results)
    assert codes.count(201) >= 1
    assert set(codes) <= {201, 409}
    assert {r.json["error"]["code"] for r in results if r.status_code == 409} <= {"IDEMPOTENCY_IN_PROGRESS"}
    assert len({r.json["data"]["id"] for r in results if r.status_code == 201}) == 1
    assert len(xendit.created) == 1
    assert pay.db.fetch_one("SELECT count(*) AS n FROM payment_requests") == {"n": 1}


def test_gateway_failure_leaves_nothing_behind(app, pay, xendit, online_mitra, customer) -> None:
    xendit.fail_next = 1
    failed = create_payment(app, customer, tier_of(pay))
    assert failed.status_code == 502
    assert failed.json["error"]["code"] == "PAYMENT_GATEWAY_ERROR"
    assert pay.db.fetch_one("SELECT count(*) AS n FROM payment_requests") == {"n": 0}
    assert create_payment(app, customer, tier_of(pay)).status_code == 201


def test_a_timed_out_create_recovers_the_invoice_by_external_id(slow_xendit, xendit, online_mitra, customer) -> None:
    app, svc = slow_xendit
    result = create_payment(app, customer, tier_of(svc), key="timeout-key-1")
    assert result.status_code == 201, result.text
    doc = result.json["data"]
    assert len(xendit.created) == 1  # looked up, never created twice
    invoice = next(iter(xendit.invoices.values()))
    assert invoice["external_id"] == doc["id"]
    assert doc["invoice_url"] == invoice["invoice_url"]
    assert payment_status(svc, doc["id"]) == "pending"


def test_a_timed_out_create_keeps_the_request_until_paid(slow_xendit, xendit, online_mitra, customer) -> None:
    app, svc = slow_xendit
    xendit.lookups_fail = True
    result = create_payment(app, customer, tier_of(svc), key="timeout-key-2")
    assert result.status_code == 502
    assert result.json["error"]["code"] == "PAYMENT_GATEWAY_ERROR"
    request_id = result.json["error"]["details"]["payment_request_id"]
    row = svc.db.fetch_one("SELECT status, invoice_url FROM payment_requests WHERE id = %(id)s", {"id": request_id})
    assert row == {"status": "pending", "invoice_url": None}  # kept: Xendit may hold an invoice for it
    replay = create_payment(app, customer, tier_of(svc), key="timeout-key-2")
    assert replay.status_code == 409
    assert replay.json["error"]["code"] == "IDEMPOTENCY_IN_PROGRESS"
    assert len(xendit.created) == 1

    assert recover_invoices(svc.db, svc.payment_gateway) == {}  # too young: its create call may still be running
    svc.db.execute("UPDATE payment_requests SET created_at = now() - interval '20 seconds'")
    assert recover_invoices(svc.db, svc.payment_gateway) == {request_id: "gateway_error"}
    xendit.lookups_fail = False
    svc.db.execute("UPDATE payment_requests SET last_reconciled_at = now() - interval '1 minute'")
    assert recover_invoices(svc.db, svc.payment_gateway) == {request_id: "recovered"}
    replayed = create_payment(app, customer, tier_of(svc), key="timeout-key-2")
    assert replayed.status_code == 201
    assert replayed.json["data"]["invoice_url"].startswith("https://checkout")
    assert len(xendit.created) == 1
    paid = send_callback(app, paid_body({"id": request_id, "amount": replayed.json["data"]["amount"]}))
    assert paid.json == {"ok": True, "confirmed": True}


def test_a_paid_callback_confirms_a_request_whose_invoice_was_never_seen(
    slow_xendit, xendit, online_mitra, customer
) -> None:
    app, svc = slow_xendit
    xendit.lookups_fail = True
    result = create_payment(app, customer, tier_of(svc))
    request_id = result.json["error"]["details"]["payment_request_id"]
    amount = next(iter(xendit.invoices.values()))["amount"]
    assert send_callback(app, paid_body({"id": request_id, "amount": amount})).json == {"ok": True, "confirmed": True}
    assert payment_status(svc, request_id) == "confirmed"


def test_reads_and_abandon(app, pay, online_mitra, customer, anonymous) -> None:
    doc = create_payment(app, customer, tier_of(pay)).json["data"]
    token = bearer(customer["access_token"])
    assert [r["id"] for r in app.simulate_get(f"{CREATE}/pending", headers=token).json["data"]["items"]] == [doc["id"]]
    assert app.simulate_get(f"{CREATE}/{doc['id']}", headers=token).json["data"]["session_id"] is None
    stranger = bearer(anonymous()["access_token"])
    assert app.simulate_get(f"{CREATE}/{doc['id']}", headers=stranger).status_code == 404
    assert app.simulate_post(f"{CREATE}/{doc['id']}/abandon", headers=stranger).status_code == 404
    abandoned = app.simulate_post(f"{CREATE}/{doc['id']}/abandon", headers=token)
    assert abandoned.status_code == 200
    assert abandoned.json["data"]["status"] == "abandoned"
    again = app.simulate_post(f"{CREATE}/{doc['id']}/abandon", headers=token)
    assert again.status_code == 409
    assert again.json["error"]["code"] == "PAYMENT_NOT_PENDING"
    assert app.simulate_get(f"{CREATE}/pending", headers=token).json["data"]["items"] == []


def test_payment_requests_per_customer_per_hour_are_limited_before_xendit(
    pay_settings: Settings, xendit: FakeXendit, online_mitra, customer, anonymous
) -> None:
    svc = build_services(replace(pay_settings, payment_requests_per_hour=2), application_name="payments-limited")
    try:
        app = testing.TestClient(create_app("public", svc))
        token = bearer(customer["access_token"])
        first = create_payment(app, customer, tier_of(svc), key="limit-key-0001")
        assert first.status_code == 201
        app.simulate_post(f"{CREATE}/{first.json['data']['id']}/abandon", headers=token)
        second = create_payment(app, customer, tier_of(svc), key="limit-key-0002")
        assert second.status_code == 201
        app.simulate_post(f"{CREATE}/{second.json['data']['id']}/abandon", headers=token)
        replay = create_payment(app, customer, tier_of(svc), key="limit-key-0002")  # a replay costs nothing
        assert replay.status_code == 201
        assert replay.json["data"]["id"] == second.json["data"]["id"]
        refused = create_payment(app, customer, tier_of(svc), key="limit-key-0003")
        assert refused.status_code == 429, refused.text
        assert refused.json["error"]["code"] == "RATE_LIMITED"
        assert 0 < int(refused.headers["Retry-After"]) <= 3601
        assert xendit.started == 2
        assert len(xendit.created) == 2  # the refused one never reached Xendit
        assert svc.db.fetch_one("SELECT count(*) AS n FROM payment_requests") == {"n": 2}
        assert create_payment(app, anonymous(), tier_of(svc)).status_code == 201  # another customer's own budget
    finally:
        svc.close()
