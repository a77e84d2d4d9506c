"""The payment_money_check job: the gauges the refund and reconciliation alerts read."""

from __future__ import annotations

from lib.metrics import m
from tests.chatflow import Chat
from tests.fakes import FakeXendit
from tests.payflow import create_payment, pay_at_xendit, run_job, send_callback, tier_of


def test_refunds_due_and_the_age_of_the_oldest(chat: Chat, xendit: FakeXendit) -> None:
    run_job(chat.pay, "payment_money_check")
    metrics = m()
    assert metrics.refunds_due._value.get() == 0
    assert metrics.refunds_due_oldest._value.get() == 0
    chat.mitra()
    doc = create_payment(chat.app, chat.customer(), tier_of(chat.pay)).json["data"]
    send_callback(chat.app, pay_at_xendit(xendit, doc["id"]))
    chat.due_now(chat.session_of(doc), "search_expires_at")
    chat.tick()  # nobody took it: a refund due
    chat.pay.db.execute("UPDATE refunds SET created_at = now() - interval '2 days'")
    run_job(chat.pay, "payment_money_check")
    assert metrics.refunds_due._value.get() == 1
    assert 2 * 86400 <= metrics.refunds_due_oldest._value.get() < 2 * 86400 + 60
    assert {r: metrics.payments_unaccounted.labels(r)._value.get() for r in ("none", "doubled", "unpaid_service")} == {
        "none": 0,
        "doubled": 0,
        "unpaid_service": 0,
    }
