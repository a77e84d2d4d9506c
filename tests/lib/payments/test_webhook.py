"""The Xendit webhook: log first, token, confirm once, quarantine, malformed bodies, the fallback sink."""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from falcon import testing

from runtime.app import create_app
from runtime.container import build_services
from tests.payflow import TOKEN, create_payment, paid_body, payment_status, send_callback, tier_of


def test_webhook_refuses_a_wrong_or_missing_token(app, pay, online_mitra, customer) -> None:
    doc = create_payment(app, customer, tier_of(pay)).json["data"]
    for token in ("wrong-token", None, ""):
        result = send_callback(app, paid_body(doc), token)
        assert result.status_code == 401
    assert payment_status(pay, doc["id"]) == "pending"
    logs = pay.db.fetch_all("SELECT outcome, raw_body FROM webhook_logs ORDER BY id")
    assert [r["outcome"] for r in logs] == ["unauthorized"] * 3
    assert json.loads(logs[0]["raw_body"])["external_id"] == doc["id"]  # verbatim, before any auth


def test_same_paid_callback_ten_times_confirms_once(app, pay, online_mitra, customer, confirmed_events) -> None:
    doc = create_payment(app, customer, tier_of(pay)).json["data"]
    body = paid_body(doc)
    with ThreadPoolExecutor(max_workers=5) as pool:
        concurrent = list(pool.map(lambda _: send_callback(app, body), range(5)))
    sequential = [send_callback(app, body) for _ in range(5)]
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
    doc = create_payment(app, customer, tier_of(pay)).json["data"]
    send_callback(app, paid_body(doc))
    result = send_callback(app, paid_body(doc, status="EXPIRED"))
    assert result.status_code == 200 and result.json == {"ok": True, "ignored": "ignored_expired_not_pending"}
    assert payment_status(pay, doc["id"]) == "confirmed"


def test_expired_callback_expires_a_pending_request(app, pay, online_mitra, customer) -> None:
    doc = create_payment(app, customer, tier_of(pay)).json["data"]
    assert send_callback(app, paid_body(doc, status="EXPIRED")).json == {"ok": True, "expired": True}
    assert payment_status(pay, doc["id"]) == "expired"


def test_amount_mismatch_is_quarantined(app, pay, online_mitra, customer, confirmed_events, caplog) -> None:
    doc = create_payment(app, customer, tier_of(pay)).json["data"]
    with caplog.at_level(logging.ERROR):
        result = send_callback(app, paid_body(doc, amount=1000, paid_amount=1000))
    assert result.status_code == 200 and result.json == {"ok": True, "quarantined": True}
    assert payment_status(pay, doc["id"]) == "pending" and confirmed_events == []
    assert "[ALERT]" in caplog.text
    usd = send_callback(app, paid_body(doc, currency="USD"))
    assert usd.json == {"ok": True, "quarantined": True}


def test_non_uuid_unknown_and_other_statuses_are_acked(app, pay, online_mitra, customer) -> None:
    old = send_callback(app, {"external_id": "order-2019-0001", "status": "PAID", "amount": 5})
    assert old.json == {"ok": True, "ignored": "ignored_non_uuid_external_id"}
    unknown = send_callback(
        app, {"external_id": "00000000-0000-4000-8000-000000000000", "status": "PAID", "amount": 5, "currency": "IDR"}
    )
    assert unknown.json == {"ok": True, "ignored": "unknown_payment_request"}
    doc = create_payment(app, customer, tier_of(pay)).json["data"]
    other = send_callback(app, paid_body(doc, status="PENDING"))
    assert other.json == {"ok": True, "ignored": "PENDING"}
    huge = send_callback(app, b"x" * (65 * 1024))
    assert huge.status_code == 413


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"PAID"', b"\xff\xfe"])
def test_a_body_that_is_not_a_json_object_is_400_after_logging(app, pay, raw: bytes) -> None:
    refused = send_callback(app, raw, token="wrong")
    assert refused.status_code == 401  # the token is still checked first
    garbage = send_callback(app, raw)
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
        result = send_callback(client, body)
        assert result.status_code == 503 and "Retry-After" in result.headers
        unauthorized = send_callback(client, body, "wrong")
        assert unauthorized.status_code == 401
    finally:
        svc.close()
    files = list(tmp_path.glob("sink-*.jsonl"))
    assert len(files) == 1 and files[0].name == f"sink-{time.strftime('%Y-%m-%d', time.gmtime())}.jsonl"
    lines = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert len(lines) == 2 and json.loads(lines[0]["raw_body"]) == body
    assert TOKEN not in files[0].read_text()
