"""The reconciliation's proof: what it reports when every paid invoice is in one place, and that it
finds one in none (the issue's refused callback), one in two, and a chat with no money behind it,
in the operators' view, in `money-check` and in the gauges the alerts read."""

from __future__ import annotations

import io
from typing import Any

from lib.metrics import m
from lib.payments.reconciliation import main, report, sample
from tests.chatflow import Chat
from tests.conftest import bearer
from tests.fakes import FakeXendit
from tests.payflow import TOKEN, accounted, create_payment, pay_at_xendit, send_callback, tier_of

ROUTE = "/internal/payments/reconciliation"


def _served(chat: Chat, xendit: FakeXendit) -> dict[str, Any]:
    _, token = chat.mitra()
    doc: dict[str, Any] = create_payment(chat.app, chat.customer(), tier_of(chat.pay)).json["data"]
    send_callback(chat.app, pay_at_xendit(xendit, doc["id"]))
    assert chat.accept(token, chat.session_of(doc)).status_code == 200
    return doc


def test_the_operators_view_and_money_check_when_all_is_accounted(chat: Chat, xendit: FakeXendit, cc_login) -> None:
    doc = _served(chat, xendit)
    _, operator, _ = cc_login("operator")
    view = chat.cc.simulate_get(ROUTE, headers=bearer(operator), params={"days": "7"})
    assert view.status_code == 200, view.text
    data = view.json["data"]
    assert data["ok"] is True
    assert data["invoices"] == 1
    assert data["problems"] == []
    assert data["accounted"] == {"session": 1, "extension": 0, "refund_due": 0, "refund_done": 0}
    [today] = data["days"]
    assert today["paid"] == {"count": 1, "amount": doc["amount"]}
    assert today["session"]["count"] == 1
    assert "items" not in data
    for bad in ("0", "91", "x", "٣"):
        assert chat.cc.simulate_get(ROUTE, headers=bearer(operator), params={"days": bad}).status_code == 422
    out = io.StringIO()
    assert main(chat.pay, days=7, out=out) == 0
    assert "1 paid invoice(s), 1 accounted for, 0 in flight, 0 problem(s)" in out.getvalue()


def test_a_paid_callback_that_was_never_acted_on_is_found_and_then_settled(chat: Chat, xendit: FakeXendit) -> None:
    """The issue's failure: a signed PAID callback logged, but refused before anything was done."""
    chat.mitra()
    customer = chat.customer()
    doc = create_payment(chat.app, customer, tier_of(chat.pay)).json["data"]
    chat.app.simulate_post(
        f"/api/client/payment-requests/{doc['id']}/abandon", headers=bearer(customer["access_token"])
    )
    body = pay_at_xendit(xendit, doc["id"])
    chat.pay.db.execute(
        "INSERT INTO webhook_logs (external_id, invoice_id, status, amount, paid_amount, currency, raw_body, received_at) "
        "VALUES (%(e)s, %(i)s, 'PAID', %(a)s, %(a)s, 'IDR', '{}', now() - interval '5 minutes')",
        {"e": doc["id"], "i": body["id"], "a": doc["amount"]},
    )
    found = report(chat.pay.db)
    assert [(p["problem"], p["invoice_id"], p["found_in"]) for p in found.problems] == [("none", body["id"], [])]
    assert sample(chat.pay.db).count("none") == 1
    assert m().payments_unaccounted.labels("none")._value.get() == 1
    out = io.StringIO()
    # money-check polls first: Xendit says the invoice is paid, so it is settled (served), and proven.
    chat.pay.db.execute("UPDATE payment_requests SET created_at = now() - interval '4 minutes'")
    assert main(chat.pay, out=out) == 0, out.getvalue()
    assert "polled Xendit for 1 invoice(s)" in out.getvalue()
    assert chat.payment_status(doc) == "confirmed"
    sample(chat.pay.db)
    assert m().payments_unaccounted.labels("none")._value.get() == 0


def test_an_invoice_in_two_places_and_a_chat_without_money_are_problems(
    chat: Chat, xendit: FakeXendit, cc_login
) -> None:
    doc = _served(chat, xendit)
    invoice = xendit.invoice_of(doc["id"])["id"]
    chat.pay.db.execute(
        "INSERT INTO refunds (payment_request_id, customer_id, invoice_id, amount, currency, reason) "
        "SELECT id, customer_id, %(i)s, amount, currency, 'test' FROM payment_requests WHERE id = %(p)s",
        {"i": invoice, "p": doc["id"]},
    )
    chat.pay.db.execute(
        "INSERT INTO payment_requests (customer_id, mode, tier_id, minutes, price, amount, status, expires_at) "
        "SELECT customer_id, mode, tier_id, minutes, price, amount, 'consumed', now() FROM payment_requests"
    )
    _, operator, _ = cc_login("operator")
    data = chat.cc.simulate_get(ROUTE, headers=bearer(operator)).json["data"]
    assert data["ok"] is False
    assert data["problem_counts"] == {"none": 0, "doubled": 1, "unpaid_service": 1}
    doubled = next(p for p in data["problems"] if p["problem"] == "doubled")
    assert doubled["found_in"] == ["session", "refund_due"]
    assert doubled["invoice_id"] == invoice
    out = io.StringIO()
    assert main(chat.pay, poll=False, out=out) == 1
    assert "PROBLEM doubled" in out.getvalue()
    assert "PROBLEM unpaid_service" in out.getvalue()


def test_a_confirmed_payment_on_its_way_is_in_flight_not_a_problem(chat: Chat, xendit: FakeXendit) -> None:
    chat.mitra()
    doc = create_payment(chat.app, chat.customer(), tier_of(chat.pay)).json["data"]
    send_callback(chat.app, pay_at_xendit(xendit, doc["id"]))  # searching: nobody accepted yet
    found = accounted(chat.pay)
    assert [str(i["payment_request_id"]) for i in found.in_flight] == [doc["id"]]
    chat.pay.db.execute("UPDATE payment_requests SET confirmed_at = now() - interval '2 hours'")
    assert [p["problem"] for p in report(chat.pay.db).problems] == ["none"]  # stuck for hours: someone looks


def test_an_unauthenticated_paid_callback_proves_nothing(chat: Chat, xendit: FakeXendit) -> None:
    chat.mitra()
    doc = create_payment(chat.app, chat.customer(), tier_of(chat.pay)).json["data"]
    forged = send_callback(chat.app, {**xendit.invoice_of(doc["id"]), "status": "PAID"}, token=TOKEN + "x")
    assert forged.status_code == 401
    chat.pay.db.execute("UPDATE webhook_logs SET received_at = now() - interval '1 hour'")
    assert accounted(chat.pay).invoices == 0
