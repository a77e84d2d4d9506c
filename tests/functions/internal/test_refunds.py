"""Refunds in the control center: the cursor list of refunds due and done, recording one as sent back
(admins, payments.refund; idempotent on the reference; racing marks settled by one UPDATE), the
failed-pairings view kept in step, and the recorded refund write-once."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from tests.chatflow import Chat
from tests.conftest import bearer
from tests.fakes import FakeXendit
from tests.payflow import accounted, create_payment, pay_at_xendit, send_callback, tier_of


def _failed_pairing(chat: Chat, xendit: FakeXendit) -> dict[str, Any]:
    """A paid request whose search nobody took: its refund due."""
    chat.mitra()
    doc = create_payment(chat.app, chat.customer(), tier_of(chat.pay)).json["data"]
    send_callback(chat.app, pay_at_xendit(xendit, doc["id"]))
    chat.due_now(chat.session_of(doc), "search_expires_at")
    chat.tick()
    refund = chat.pay.db.fetch_one("SELECT * FROM refunds")
    assert refund is not None
    return refund


def _mark(chat: Chat, token: str, refund_id: object, reference: Any) -> Any:
    return chat.cc.simulate_post(
        f"/internal/refunds/{refund_id}/refunded", headers=bearer(token), json={"reference": reference}
    )


def test_refunds_due_and_done_and_recording_one(chat: Chat, xendit: FakeXendit, cc_login) -> None:
    refund = _failed_pairing(chat, xendit)
    admin = chat.admin()
    _, operator, _ = cc_login("operator")
    due = chat.cc.simulate_get("/internal/refunds", headers=bearer(operator))
    assert due.status_code == 200
    [item] = due.json["data"]["items"]
    assert item["id"] == str(refund["id"])
    assert item["status"] == "due"
    assert item["reason"] == "PAIRING_TIMEOUT"
    assert item["amount"] == 30000
    assert item["currency"] == "IDR"
    assert item["kind"] == "session"
    assert item["invoice_id"] == refund["invoice_id"]
    assert item["reference"] is None
    assert _mark(chat, operator, refund["id"], "BCA-0001").status_code == 403  # admins only

    done = _mark(chat, admin, refund["id"], "  BCA-0001  ")
    assert done.status_code == 200, done.text
    assert done.json["data"]["status"] == "done"
    assert done.json["data"]["reference"] == "BCA-0001"
    again = _mark(chat, admin, refund["id"], "BCA-0001")
    assert again.status_code == 200
    assert again.json["data"] == done.json["data"]
    other = _mark(chat, admin, refund["id"], "BCA-9999")
    assert other.status_code == 409
    assert other.json["error"]["code"] == "REFUND_ALREADY_RECORDED"
    assert other.json["error"]["details"]["reference"] == "BCA-0001"

    assert chat.cc.simulate_get("/internal/refunds", headers=bearer(admin)).json["data"]["items"] == []
    listed = chat.cc.simulate_get("/internal/refunds", headers=bearer(admin), params={"status": "done"})
    assert [r["id"] for r in listed.json["data"]["items"]] == [str(refund["id"])]
    failures = chat.cc.simulate_get("/internal/failed-pairings", headers=bearer(admin)).json["data"]["items"]
    assert failures[0]["review_status"] == "refunded"
    assert failures[0]["refund_reference"] == "BCA-0001"
    one = chat.cc.simulate_get(f"/internal/failed-pairings/{failures[0]['id']}", headers=bearer(admin)).json["data"]
    assert one["refund_id"] == str(refund["id"])
    assert one["refunded_at"] is not None
    detail = chat.cc.simulate_get(
        f"/internal/payment-requests/{refund['payment_request_id']}", headers=bearer(admin)
    ).json["data"]
    assert [r["status"] for r in detail["refunds"]] == ["done"]
    assert [p["outcome"] for p in detail["paid_invoices"]] == ["confirmed"]
    report = accounted(chat.pay)
    assert report.accounted["refund_done"] == 1
    assert report.refunds_due["count"] == 0


def test_bad_input_and_unknown_refunds(chat: Chat, xendit: FakeXendit) -> None:
    refund = _failed_pairing(chat, xendit)
    admin = chat.admin()
    for bad in ("", "   ", "x" * 201, None, 7):
        assert _mark(chat, admin, refund["id"], bad).status_code == 422, bad
    unknown = _mark(chat, admin, "00000000-0000-4000-8000-000000000000", "BCA-1")
    assert unknown.status_code == 404
    assert chat.cc.simulate_get("/internal/refunds", headers=bearer(admin), params={"status": "all"}).status_code == 422


def test_racing_marks_with_different_references_record_one(chat: Chat, xendit: FakeXendit) -> None:
    refund = _failed_pairing(chat, xendit)
    admin = chat.admin()
    barrier = threading.Barrier(8)
    answers: dict[str, int] = {}

    def mark(reference: str) -> None:
        barrier.wait()
        answers[reference] = _mark(chat, admin, refund["id"], reference).status_code

    threads = [threading.Thread(target=mark, args=(f"TRF-{n}",)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers.values()) == [200] + [409] * 7
    winner = next(ref for ref, code in answers.items() if code == 200)
    row = chat.pay.db.fetch_one("SELECT reference FROM refunds")
    assert row == {"reference": winner}


def test_a_recorded_refund_never_changes(chat: Chat, xendit: FakeXendit) -> None:
    refund = _failed_pairing(chat, xendit)
    assert _mark(chat, chat.admin(), refund["id"], "BCA-7").status_code == 200
    with psycopg.connect(chat.pay.settings.require_database_url()) as conn, pytest.raises(psycopg.IntegrityError):
        conn.execute("UPDATE refunds SET reference = 'forged' WHERE id = %s", (refund["id"],))
