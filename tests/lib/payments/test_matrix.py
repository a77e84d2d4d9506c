"""Request state x Xendit callback, through the real webhook and the fake Xendit (issue 23): every
PAID or SETTLED callback for a known invoice is answered 200 with its outcome on the log row, money
that cannot be served becomes exactly one refund due, and each case ends with the reconciliation
finding every paid invoice in exactly one place."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.chatflow import Chat
from tests.conftest import bearer
from tests.fakes import FakeXendit, InvoiceNotPayable
from tests.payflow import (
    CREATE,
    accounted,
    create_payment,
    pay_at_xendit,
    run_job,
    send_callback,
    tier_of,
    xendit_says,
)


def _request(chat: Chat, customer: dict[str, Any]) -> dict[str, Any]:
    created = create_payment(chat.app, customer, tier_of(chat.pay))
    assert created.status_code == 201, created.text
    doc: dict[str, Any] = created.json["data"]
    return doc


def _abandon(chat: Chat, customer: dict[str, Any], doc: dict[str, Any]) -> None:
    result = chat.app.simulate_post(f"{CREATE}/{doc['id']}/abandon", headers=bearer(customer["access_token"]))
    assert result.status_code == 200, result.text


def _row(chat: Chat, request_id: str) -> dict[str, Any]:
    row = chat.pay.db.fetch_one("SELECT * FROM payment_requests WHERE id = %(id)s", {"id": request_id})
    assert row is not None
    return row


def _outcomes(chat: Chat, request_id: str) -> list[str]:
    rows = chat.pay.db.fetch_all(
        "SELECT outcome FROM webhook_logs WHERE external_id = %(e)s ORDER BY id", {"e": request_id}
    )
    return [r["outcome"] for r in rows]


def _refunds(chat: Chat) -> list[tuple[str, str, str]]:
    rows = chat.pay.db.fetch_all("SELECT payment_request_id, invoice_id, reason FROM refunds ORDER BY created_at")
    return [(str(r["payment_request_id"]), r["invoice_id"], r["reason"]) for r in rows]


def _two_tabs(chat: Chat) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(a mitra's token, request A abandoned, request B pending) of one customer, as two tabs leave them."""
    _, token = chat.mitra()
    customer = chat.customer()
    a = _request(chat, customer)
    _abandon(chat, customer, a)
    return token, a, _request(chat, customer)


def _paired(chat: Chat, token: str, doc: dict[str, Any]) -> str:
    session_id = chat.session_of(doc)
    assert chat.accept(token, session_id).status_code == 200
    assert _row(chat, doc["id"])["status"] == "consumed"
    return session_id


@pytest.mark.parametrize("status", ["PAID", "SETTLED"])
def test_pending_paid_or_settled_confirms_and_delivers(chat: Chat, xendit: FakeXendit, status: str) -> None:
    _, token = chat.mitra()
    customer = chat.customer()
    doc = _request(chat, customer)
    paid = send_callback(chat.app, pay_at_xendit(xendit, doc["id"], status))
    assert paid.status_code == 200
    assert paid.json == {"ok": True, "confirmed": True}
    _paired(chat, token, doc)
    assert _row(chat, doc["id"])["paid_invoice_id"] == xendit.invoice_of(doc["id"])["id"]
    report = accounted(chat.pay)
    assert report.accounted["session"] == 1
    assert report.invoices == 1


def test_duplicated_and_settled_after_paid_change_nothing(chat: Chat, xendit: FakeXendit, confirmed_events) -> None:
    _, token = chat.mitra()
    doc = _request(chat, chat.customer())
    body = pay_at_xendit(xendit, doc["id"])
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda _: send_callback(chat.app, body), range(10)))
    assert all(a.status_code == 200 for a in answers)
    assert sum(1 for a in answers if a.json.get("confirmed")) == 1
    settled = send_callback(chat.app, {**body, "status": "SETTLED"})
    assert settled.json == {"ok": True, "duplicate": True}
    assert confirmed_events == [doc["id"]]
    assert _outcomes(chat, doc["id"]).count("duplicate") == 10
    _paired(chat, token, doc)
    assert _refunds(chat) == []
    accounted(chat.pay)


def test_expired_then_paid_out_of_order_still_serves(chat: Chat, xendit: FakeXendit) -> None:
    _, token = chat.mitra()
    doc = _request(chat, chat.customer())
    stale = xendit_says(xendit, doc["id"], status="EXPIRED")
    paid = pay_at_xendit(xendit, doc["id"])
    assert send_callback(chat.app, stale).json == {"ok": True, "expired": True}
    assert _row(chat, doc["id"])["status"] == "expired"
    assert send_callback(chat.app, paid).json == {"ok": True, "confirmed": True}
    assert send_callback(chat.app, stale).json == {"ok": True, "ignored": "ignored_expired_not_pending"}
    _paired(chat, token, doc)
    accounted(chat.pay)


def test_an_expired_callback_for_an_unpaid_request_records_the_invoice_closed(chat: Chat, xendit: FakeXendit) -> None:
    chat.mitra()
    customer = chat.customer()
    doc = _request(chat, customer)
    _abandon(chat, customer, doc)
    xendit.set_status(xendit.invoice_of(doc["id"])["id"], "EXPIRED")
    assert send_callback(chat.app, xendit_says(xendit, doc["id"])).json == {"ok": True, "closed": True}
    row = _row(chat, doc["id"])
    assert row["status"] == "abandoned"
    assert row["invoice_closed_at"] is not None
    run_job(chat.pay, "payment_close")  # nothing left to ask Xendit
    assert xendit.expired == []
    closure = chat.pay.db.fetch_one("SELECT outcome FROM invoice_closures")
    assert closure == {"outcome": "already_expired"}
    accounted(chat.pay)


def test_paid_after_our_expiry_with_nothing_else_open_serves(chat: Chat, xendit: FakeXendit) -> None:
    _, token = chat.mitra()
    doc = _request(chat, chat.customer())
    chat.pay.db.execute("UPDATE payment_requests SET expires_at = now() - interval '1 second'")
    run_job(chat.pay, "payment_expiry")
    assert _row(chat, doc["id"])["status"] == "expired"
    body = pay_at_xendit(xendit, doc["id"])  # paid before the closure job reached Xendit
    assert send_callback(chat.app, body).json == {"ok": True, "confirmed": True}
    run_job(chat.pay, "payment_close")
    assert xendit.expired == []  # its own invoice is paid: nothing to close
    assert chat.pay.db.fetch_one("SELECT outcome FROM invoice_closures") == {"outcome": "paid"}
    _paired(chat, token, doc)
    accounted(chat.pay)


def test_abandoning_closes_the_invoice_at_xendit(chat: Chat, xendit: FakeXendit) -> None:
    chat.mitra()
    customer = chat.customer()
    doc = _request(chat, customer)
    _abandon(chat, customer, doc)
    run_job(chat.pay, "payment_close")
    invoice = xendit.invoice_of(doc["id"])
    assert xendit.expired == [invoice["id"]]
    assert invoice["status"] == "EXPIRED"
    with pytest.raises(InvoiceNotPayable):
        pay_at_xendit(xendit, doc["id"])
    row = _row(chat, doc["id"])
    assert row["invoice_closed_at"] is not None
    closure = chat.pay.db.fetch_one("SELECT reason, outcome, attempts, closed_at FROM invoice_closures")
    assert closure is not None
    assert (closure["reason"], closure["outcome"], closure["attempts"]) == (
        "abandoned",
        "expired",
        1,
    )
    accounted(chat.pay)


def test_paid_after_abandon_with_nothing_else_open_serves(chat: Chat, xendit: FakeXendit) -> None:
    _, token = chat.mitra()
    customer = chat.customer()
    doc = _request(chat, customer)
    _abandon(chat, customer, doc)
    body = pay_at_xendit(xendit, doc["id"])  # in another tab, before the invoice was closed
    assert send_callback(chat.app, body).json == {"ok": True, "confirmed": True}
    _paired(chat, token, doc)
    accounted(chat.pay)


def test_two_tabs_paying_the_abandoned_request_supersedes_the_unpaid_one(chat: Chat, xendit: FakeXendit) -> None:
    """The issue's case: A abandoned, B created, then A's invoice paid. Before: 409 and A stuck."""
    token, a, b = _two_tabs(chat)
    body = pay_at_xendit(xendit, a["id"])
    answers = [send_callback(chat.app, body) for _ in range(3)]
    assert [x.status_code for x in answers] == [200, 200, 200]
    assert answers[0].json == {"ok": True, "confirmed": True}
    assert _outcomes(chat, a["id"]) == ["confirmed", "duplicate", "duplicate"]
    superseded = _row(chat, b["id"])
    assert (superseded["status"], superseded["failure_cause"]) == ("abandoned", "SUPERSEDED")
    run_job(chat.pay, "payment_close")
    assert xendit.invoice_of(b["id"])["status"] == "EXPIRED"  # B's invoice can no longer take money
    with pytest.raises(InvoiceNotPayable):
        pay_at_xendit(xendit, b["id"])
    _paired(chat, token, a)
    assert _refunds(chat) == []
    accounted(chat.pay)


def test_paid_after_abandon_while_another_paid_request_is_open_is_a_refund_due(chat: Chat, xendit: FakeXendit) -> None:
    token, a, b = _two_tabs(chat)
    assert send_callback(chat.app, pay_at_xendit(xendit, b["id"])).json == {"ok": True, "confirmed": True}
    late = send_callback(chat.app, pay_at_xendit(xendit, a["id"]))
    assert late.status_code == 200
    assert late.json == {"ok": True, "refund_due": True, "reason": "ALREADY_ACTIVE"}
    assert _outcomes(chat, a["id"]) == ["refund_due"]
    row = _row(chat, a["id"])
    assert (row["status"], row["failure_cause"]) == ("failed_pairing", "ALREADY_ACTIVE")
    assert _refunds(chat) == [(a["id"], xendit.invoice_of(a["id"])["id"], "ALREADY_ACTIVE")]
    failure = chat.pay.db.fetch_one("SELECT cause, review_status FROM pairing_failures")
    assert failure == {"cause": "ALREADY_ACTIVE", "review_status": "open"}
    again = send_callback(chat.app, xendit_says(xendit, a["id"], status="SETTLED"))
    assert again.json == {"ok": True, "duplicate": True}
    assert len(_refunds(chat)) == 1
    _paired(chat, token, b)
    report = accounted(chat.pay)
    assert report.accounted == {"session": 1, "extension": 0, "refund_due": 1, "refund_done": 0}


def test_paid_after_abandon_with_a_live_session_is_a_refund_due(chat: Chat, xendit: FakeXendit) -> None:
    token, a, b = _two_tabs(chat)
    send_callback(chat.app, pay_at_xendit(xendit, b["id"]))
    _paired(chat, token, b)
    late = send_callback(chat.app, pay_at_xendit(xendit, a["id"]))
    assert late.json == {"ok": True, "refund_due": True, "reason": "ALREADY_ACTIVE"}
    assert [r[2] for r in _refunds(chat)] == ["ALREADY_ACTIVE"]
    accounted(chat.pay)


def test_a_failed_pairing_is_a_refund_due_once(chat: Chat, xendit: FakeXendit) -> None:
    chat.mitra()
    doc = _request(chat, chat.customer())
    body = pay_at_xendit(xendit, doc["id"])
    send_callback(chat.app, body)
    chat.due_now(chat.session_of(doc), "search_expires_at")
    chat.tick()
    assert _row(chat, doc["id"])["status"] == "failed_pairing"
    assert send_callback(chat.app, body).json == {"ok": True, "duplicate": True}
    assert _refunds(chat) == [(doc["id"], body["id"], "PAIRING_TIMEOUT")]
    report = accounted(chat.pay)
    assert report.accounted["refund_due"] == 1


def test_a_second_invoice_paid_for_a_consumed_request_is_a_refund_due(chat: Chat, xendit: FakeXendit) -> None:
    _, token = chat.mitra()
    doc = _request(chat, chat.customer())
    first = pay_at_xendit(xendit, doc["id"])
    send_callback(chat.app, first)
    _paired(chat, token, doc)
    second = send_callback(chat.app, {**first, "id": "inv_paid_twice"})
    assert second.json == {"ok": True, "refund_due": True, "reason": "SECOND_PAYMENT"}
    assert _row(chat, doc["id"])["status"] == "consumed"
    assert _refunds(chat) == [(doc["id"], "inv_paid_twice", "SECOND_PAYMENT")]
    report = accounted(chat.pay)
    assert report.accounted == {"session": 1, "extension": 0, "refund_due": 1, "refund_done": 0}


def test_an_amount_mismatch_is_quarantined_and_owed_back(chat: Chat, xendit: FakeXendit) -> None:
    chat.mitra()
    doc = _request(chat, chat.customer())
    body = pay_at_xendit(xendit, doc["id"], status="PAID")
    answer = send_callback(chat.app, {**body, "paid_amount": 1000})
    assert answer.json == {"ok": True, "quarantined": True}
    assert _row(chat, doc["id"])["status"] == "pending"  # nothing credited
    assert _refunds(chat) == [(doc["id"], body["id"], "AMOUNT_MISMATCH")]
    # Its expiry closes nothing more: the closure finds the invoice paid and already owed back.
    chat.pay.db.execute("UPDATE payment_requests SET expires_at = now() - interval '1 second'")
    run_job(chat.pay, "payment_expiry")
    run_job(chat.pay, "payment_close")
    assert chat.pay.db.fetch_one("SELECT outcome FROM invoice_closures") == {"outcome": "paid"}
    assert len(_refunds(chat)) == 1
    accounted(chat.pay)


def test_a_paid_invoice_whose_callback_was_lost_is_found_by_polling(
    chat: Chat, xendit: FakeXendit, confirmed_events
) -> None:
    _, token = chat.mitra()
    customer = chat.customer()
    doc = _request(chat, customer)
    _abandon(chat, customer, doc)
    xendit.fail_next = 1  # Xendit is down when the closure job tries: the closure is retried later
    run_job(chat.pay, "payment_close")
    assert chat.pay.db.fetch_one("SELECT closed_at, last_error FROM invoice_closures") == {
        "closed_at": None,
        "last_error": "PAYMENT_GATEWAY_ERROR",
    }
    body = pay_at_xendit(xendit, doc["id"])  # meanwhile paid; the callback never arrives
    chat.pay.db.execute("UPDATE payment_requests SET created_at = now() - interval '4 minutes'")
    run_job(chat.pay, "payment_reconcile")
    assert confirmed_events == [doc["id"]]
    assert _row(chat, doc["id"])["status"] == "confirmed"
    assert send_callback(chat.app, body).json == {"ok": True, "duplicate": True}  # the late callback
    source = chat.pay.db.fetch_one("SELECT source, outcome FROM paid_invoices")
    assert source == {"source": "poll", "outcome": "confirmed"}
    _paired(chat, token, doc)
    accounted(chat.pay)


def test_concurrent_payments_of_two_tabs_serve_one_and_owe_the_other(chat: Chat, xendit: FakeXendit) -> None:
    _, a, b = _two_tabs(chat)
    bodies = [pay_at_xendit(xendit, a["id"]), pay_at_xendit(xendit, b["id"])] * 5
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda body: send_callback(chat.app, body), bodies))
    assert all(x.status_code == 200 for x in answers)
    kinds = sorted(next(k for k in ("confirmed", "refund_due", "duplicate") if k in x.json) for x in answers)
    assert kinds == ["confirmed"] + ["duplicate"] * 8 + ["refund_due"]
    statuses = sorted(_row(chat, r["id"])["status"] for r in (a, b))
    assert statuses == ["confirmed", "failed_pairing"]
    assert len(_refunds(chat)) == 1
    accounted(chat.pay)
