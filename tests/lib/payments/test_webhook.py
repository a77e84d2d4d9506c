"""The Xendit webhook: log first, token, confirm once, quarantine, malformed bodies, the fallback sink,
cheap refused callbacks (a bounded prefix, a per-address limit)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from falcon import testing

from lib.config.env import Settings
from lib.payments.webhook import REFUSED_BODY_PREFIX
from lib.services import Services
from runtime.app import create_app
from runtime.container import build_services
from tests.conftest import bearer
from tests.payflow import TOKEN, WEBHOOK, create_payment, paid_body, payment_status, send_callback, tier_of


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
    assert outcomes.count("confirmed") == 1
    assert outcomes.count("duplicate") == 9
    row = pay.db.fetch_one("SELECT status, paid_amount, payment_channel FROM payment_requests")
    assert row == {"status": "confirmed", "paid_amount": doc["amount"], "payment_channel": "QRIS"}


def test_expired_after_paid_changes_nothing(app, pay, online_mitra, customer) -> None:
    doc = create_payment(app, customer, tier_of(pay)).json["data"]
    send_callback(app, paid_body(doc))
    result = send_callback(app, paid_body(doc, status="EXPIRED"))
    assert result.status_code == 200
    assert result.json == {"ok": True, "ignored": "ignored_expired_not_pending"}
    assert payment_status(pay, doc["id"]) == "confirmed"


def test_expired_callback_expires_a_pending_request(app, pay, online_mitra, customer) -> None:
    doc = create_payment(app, customer, tier_of(pay)).json["data"]
    assert send_callback(app, paid_body(doc, status="EXPIRED")).json == {"ok": True, "expired": True}
    assert payment_status(pay, doc["id"]) == "expired"


def test_amount_mismatch_is_quarantined(app, pay, online_mitra, customer, confirmed_events, caplog) -> None:
    doc = create_payment(app, customer, tier_of(pay)).json["data"]
    with caplog.at_level(logging.ERROR):
        result = send_callback(app, paid_body(doc, amount=1000, paid_amount=1000))
    assert result.status_code == 200
    assert result.json == {"ok": True, "quarantined": True}
    assert payment_status(pay, doc["id"]) == "pending"
    assert confirmed_events == []
    assert "[ALERT]" in caplog.text
    assert send_callback(app, paid_body(doc, amount=1000, paid_amount=1000)).json == {"ok": True, "duplicate": True}
    usd = send_callback(app, paid_body(doc, currency="USD", id="inv-paid-in-usd"))  # another invoice, paid in USD
    assert usd.json == {"ok": True, "quarantined": True}
    # Money received and never credited is owed back: one refund due per paid invoice.
    refunds = pay.db.fetch_all("SELECT invoice_id, amount, currency, reason FROM refunds ORDER BY amount")
    assert refunds == [
        {"invoice_id": paid_body(doc)["id"], "amount": 1000, "currency": "IDR", "reason": "AMOUNT_MISMATCH"},
        {"invoice_id": "inv-paid-in-usd", "amount": doc["amount"], "currency": "USD", "reason": "AMOUNT_MISMATCH"},
    ]


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
    assert garbage.status_code == 400
    assert garbage.json == {"ok": False, "error": "malformed_body"}
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
        assert result.status_code == 503
        assert "Retry-After" in result.headers
        unauthorized = send_callback(client, body, "wrong")
        assert unauthorized.status_code == 401
    finally:
        svc.close()
    files = list(tmp_path.glob("sink-*.jsonl"))
    assert len(files) == 1
    assert files[0].name == f"sink-{time.strftime('%Y-%m-%d', time.gmtime())}.jsonl"
    lines = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert len(lines) == 2
    assert json.loads(lines[0]["raw_body"]) == body
    assert TOKEN not in files[0].read_text()


def _refused_body(size: int) -> bytes:
    """A forged PAID callback padded to `size` bytes (under the 64 KiB body limit)."""
    head = {"external_id": "00000000-0000-4000-8000-000000000009", "status": "PAID", "amount": 30000, "pad": ""}
    pad = size - len(json.dumps(head).encode())
    return json.dumps({**head, "pad": "x" * pad}).encode()


def test_a_refused_callback_keeps_a_prefix_its_length_and_hash(
    app, pay, online_mitra, customer, internal, cc_login
) -> None:
    raw = _refused_body(60 * 1024)
    for _ in range(20):
        assert send_callback(app, raw, token="wrong-token").status_code == 401
    rows = pay.db.fetch_all("SELECT * FROM webhook_logs ORDER BY id")
    assert len(rows) == 20
    assert {(r["outcome"], bytes(r["raw_body"]), r["body_length"], r["body_sha256"]) for r in rows} == {
        ("unauthorized", raw[:REFUSED_BODY_PREFIX], len(raw), hashlib.sha256(raw).hexdigest())
    }
    assert rows[0]["external_id"] == "00000000-0000-4000-8000-000000000009"  # still searchable
    stored = pay.db.fetch_one("SELECT sum(octet_length(raw_body)) AS n FROM webhook_logs")
    assert stored is not None
    assert stored["n"] == 20 * REFUSED_BODY_PREFIX  # not 20 x 60 KiB
    # An authenticated callback is still logged verbatim, however large.
    doc = create_payment(app, customer, tier_of(pay)).json["data"]
    paid = json.dumps({**paid_body(doc), "pad": "y" * 50_000}).encode()
    assert send_callback(app, paid).json == {"ok": True, "confirmed": True}
    row = pay.db.fetch_one("SELECT raw_body, body_length, body_sha256 FROM webhook_logs WHERE outcome = 'confirmed'")
    assert row == {"raw_body": paid, "body_length": len(paid), "body_sha256": hashlib.sha256(paid).hexdigest()}
    # The control center's views read the short rows as before.
    _, operator, _ = cc_login("operator")
    listed = internal.simulate_get(
        "/internal/webhook-logs", headers=bearer(operator), params={"outcome": "unauthorized"}
    )
    assert listed.status_code == 200
    assert len(listed.json["data"]["items"]) == 20
    one = internal.simulate_get(f"/internal/webhook-logs/{rows[0]['id']}", headers=bearer(operator)).json["data"]
    assert one["raw_body"] == raw[:REFUSED_BODY_PREFIX].decode()
    assert one["body_length"] == len(raw)


@pytest.fixture
def strict_app(pay_settings: Settings) -> Iterator[tuple[testing.TestClient, Services]]:
    svc = build_services(replace(pay_settings, webhook_refused_per_minute=3), application_name="webhook-strict")
    yield testing.TestClient(create_app("public", svc)), svc
    svc.close()


@pytest.mark.parametrize(
    ("first", "same_network", "other_network"),
    [
        ("203.0.113.7", "203.0.113.7", "203.0.113.8"),
        ("2001:db8:9::1", "2001:db8:9::2", "2001:db8:9:1::1"),
    ],  # IPv6: its /64
)
def test_refused_callbacks_beyond_the_limit_per_address_are_429_and_not_logged(
    strict_app: tuple[testing.TestClient, Services],
    online_mitra,
    customer,
    first: str,
    same_network: str,
    other_network: str,
) -> None:
    app, svc = strict_app

    def refused(ip: str) -> testing.Result:
        return app.simulate_post(
            WEBHOOK, body=b'{"status": "PAID"}', headers={"x-callback-token": "wrong"}, remote_addr=ip
        )

    answers = [refused(first).status_code for _ in range(5)]
    assert answers == [401, 401, 401, 429, 429]
    limited = refused(same_network)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json["error"]["code"] == "RATE_LIMITED"
    assert refused(other_network).status_code == 401  # another address (IPv6: /64) has its own allowance
    logged = svc.db.fetch_all("SELECT client_ip FROM webhook_logs ORDER BY id")
    assert [r["client_ip"] for r in logged] == [first] * 3 + [other_network]  # the address itself is logged
    # Xendit's own callbacks from the limited address are never refused: money comes first.
    doc = create_payment(app, customer, tier_of(svc)).json["data"]
    raw = json.dumps(paid_body(doc)).encode()
    for _ in range(5):
        ok = app.simulate_post(WEBHOOK, body=raw, headers={"x-callback-token": TOKEN}, remote_addr=first)
        assert ok.status_code == 200
    assert payment_status(svc, doc["id"]) == "confirmed"


def test_text_postgresql_cannot_hold_is_logged_not_refused(app, pay, online_mitra, customer) -> None:
    """A NUL or a lone surrogate in a parsed field must not cost the log row (log first) or the payment."""
    forged = b'{"external_id": "\\ud800", "status": "PAID\\u0000", "id": "x\\udfff"}'
    assert send_callback(app, forged, token="wrong").status_code == 401
    doc = create_payment(app, customer, tier_of(pay)).json["data"]
    odd = send_callback(app, paid_body(doc, status="PEND\ud800ING"))
    assert odd.status_code == 200
    assert odd.json == {"ok": True, "ignored": "PEND?ING"}
    paid = send_callback(app, paid_body(doc, payment_channel="QRIS\x00\udfff"))
    assert paid.json == {"ok": True, "confirmed": True}
    rows = pay.db.fetch_all("SELECT external_id, status, invoice_id, outcome FROM webhook_logs ORDER BY id")
    assert [(r["external_id"], r["status"], r["outcome"]) for r in rows] == [
        ("?", "PAID?", "unauthorized"),
        (doc["id"], "PEND?ING", "ignored_status_pend?ing"),
        (doc["id"], "PAID", "confirmed"),
    ]
    assert rows[0]["invoice_id"] == "x?"
    channel = pay.db.fetch_one("SELECT payment_channel FROM payment_requests WHERE id = %(i)s", {"i": doc["id"]})
    assert channel == {"payment_channel": "QRIS??"}
