"""The control center's payment views."""

from __future__ import annotations

import json

from tests.conftest import bearer
from tests.payflow import create_payment, paid_body, send_callback, tier_of


def test_control_center_views(app, pay, online_mitra, customer, internal, cc_login) -> None:
    _, admin, _ = cc_login("admin")
    _, operator, _ = cc_login("operator")
    doc = create_payment(app, customer, tier_of(pay)).json["data"]
    send_callback(app, paid_body(doc))
    listed = internal.simulate_get(
        "/internal/payment-requests", headers=bearer(operator), params={"status": "confirmed"}
    )
    assert [r["id"] for r in listed.json["data"]["items"]] == [doc["id"]]
    detail = internal.simulate_get(f"/internal/payment-requests/{doc['id']}", headers=bearer(operator)).json["data"]
    assert detail["customer_id"] == customer["user"]["id"]
    assert detail["webhooks"][0]["outcome"] == "confirmed"
    logs = internal.simulate_get("/internal/webhook-logs", headers=bearer(operator), params={"external_id": doc["id"]})
    item = logs.json["data"]["items"][0]
    assert item["external_id"] == doc["id"]
    assert "raw_body" not in item
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
