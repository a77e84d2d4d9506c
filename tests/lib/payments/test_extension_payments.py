"""Extension payments (issue 23): an approved extension's invoice is closed at Xendit when the chat
ends early or the extension lapses, money for an extension that no longer applies is a refund due
(found by a callback, a poll of its short window, or the closure), and an invoice Xendit refuses to
create leaves no request behind."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chatflow import Chat
from tests.conftest import bearer
from tests.fakes import FakeXendit, InvoiceNotPayable
from tests.payflow import accounted, pay_at_xendit, run_job, send_callback, tier_of


def _approved(chat: Chat) -> tuple[dict[str, Any], str, str, dict[str, Any]]:
    """(customer, mitra token, session id, the approved extension with its payment request)."""
    customer, _, token, session_id = chat.paired()
    requested = chat.app.simulate_post(
        f"/api/client/chat/{session_id}/extensions",
        headers=bearer(customer["access_token"]),
        json={"tier_id": tier_of(chat.pay, 15)},
    )
    assert requested.status_code == 201, requested.text
    approved = chat.app.simulate_post(
        f"/api/mitra/extensions/{requested.json['data']['id']}/respond",
        headers=bearer(token),
        json={"decision": "approve"},
    )
    assert approved.status_code == 200, approved.text
    return customer, token, session_id, approved.json["data"]


def _request_status(chat: Chat, request_id: str) -> str:
    row = chat.pay.db.fetch_one("SELECT status FROM payment_requests WHERE id = %(id)s", {"id": request_id})
    assert row is not None
    return str(row["status"])


def _refund_reasons(chat: Chat) -> list[str]:
    return [r["reason"] for r in chat.pay.db.fetch_all("SELECT reason FROM refunds ORDER BY created_at")]


def _end(chat: Chat, customer: dict[str, Any], session_id: str) -> None:
    ended = chat.app.simulate_post(f"/api/client/chat/{session_id}/end", headers=bearer(customer["access_token"]))
    assert ended.status_code == 200, ended.text


def test_a_paid_extension_is_accounted_as_a_consumed_extension(chat: Chat, xendit: FakeXendit) -> None:
    _, _, session_id, ext = _approved(chat)
    paid = send_callback(chat.app, pay_at_xendit(xendit, ext["payment_request_id"]))
    assert paid.json == {"ok": True, "confirmed": True}
    assert chat.status(session_id) == "active"
    report = accounted(chat.pay)
    assert report.accounted == {"session": 1, "extension": 1, "refund_due": 0, "refund_done": 0}


def test_ending_the_chat_early_closes_the_approved_extensions_invoice(chat: Chat, xendit: FakeXendit) -> None:
    customer, _, session_id, ext = _approved(chat)
    _end(chat, customer, session_id)
    assert _request_status(chat, ext["payment_request_id"]) == "expired"  # before: pending, payable
    closure = chat.pay.db.fetch_one("SELECT reason, closed_at FROM invoice_closures")
    assert closure == {"reason": "extension_cancelled", "closed_at": None}
    run_job(chat.pay, "payment_close")
    with pytest.raises(InvoiceNotPayable):
        pay_at_xendit(xendit, ext["payment_request_id"])
    assert chat.pay.db.fetch_one("SELECT outcome FROM invoice_closures") == {"outcome": "expired"}
    accounted(chat.pay)


def test_an_extension_paid_after_the_chat_ended_is_a_refund_due(chat: Chat, xendit: FakeXendit) -> None:
    customer, _, session_id, ext = _approved(chat)
    _end(chat, customer, session_id)
    body = pay_at_xendit(xendit, ext["payment_request_id"])  # paid before the closure reached Xendit
    late = send_callback(chat.app, body)
    assert late.json == {"ok": True, "refund_due": True, "reason": "EXTENSION_NOT_APPLIED"}
    assert chat.status(session_id) == "closing"
    assert _refund_reasons(chat) == ["EXTENSION_NOT_APPLIED"]
    failure = chat.pay.db.fetch_one("SELECT cause, session_id FROM pairing_failures")
    assert failure is not None
    assert failure["cause"] == "EXTENSION_NOT_APPLIED"
    assert str(failure["session_id"]) == session_id
    run_job(chat.pay, "payment_close")
    assert chat.pay.db.fetch_one("SELECT outcome FROM invoice_closures") == {"outcome": "paid"}
    report = accounted(chat.pay)
    assert report.accounted == {"session": 1, "extension": 0, "refund_due": 1, "refund_done": 0}


def test_a_lost_callback_for_a_lapsed_extension_is_found_by_polling_its_short_window(
    chat: Chat, xendit: FakeXendit
) -> None:
    _, _, session_id, ext = _approved(chat)
    request_id = ext["payment_request_id"]
    pay_at_xendit(xendit, request_id)  # paid at the last second; the callback is lost
    chat.pay.db.execute("UPDATE session_extensions SET pay_by = now() - interval '1 second'")
    chat.tick()  # the extension lapses: the chat moves to its goodbyes, the request expires
    assert chat.status(session_id) == "closing"
    assert _request_status(chat, request_id) == "expired"
    chat.pay.db.execute(
        "UPDATE payment_requests SET created_at = now() - interval '4 minutes' WHERE id = %(p)s", {"p": request_id}
    )
    run_job(chat.pay, "payment_reconcile")
    assert _request_status(chat, request_id) == "failed_pairing"
    assert _refund_reasons(chat) == ["EXTENSION_NOT_APPLIED"]
    run_job(chat.pay, "payment_close")
    assert chat.pay.db.fetch_one("SELECT reason, outcome FROM invoice_closures") == {
        "reason": "extension_lapsed",
        "outcome": "paid",
    }
    accounted(chat.pay)


def test_an_invoice_xendit_refuses_leaves_no_request_behind(chat: Chat, xendit: FakeXendit) -> None:
    customer, _, token, session_id = chat.paired()
    requested = chat.app.simulate_post(
        f"/api/client/chat/{session_id}/extensions",
        headers=bearer(customer["access_token"]),
        json={"tier_id": tier_of(chat.pay, 15)},
    )
    xendit.fail_next = 1  # Xendit answers the create with an error
    approved = chat.app.simulate_post(
        f"/api/mitra/extensions/{requested.json['data']['id']}/respond",
        headers=bearer(token),
        json={"decision": "approve"},
    )
    assert approved.status_code == 200, approved.text
    assert approved.json["data"]["payment_request_id"] is None
    assert chat.pay.db.fetch_one("SELECT count(*) AS n FROM payment_requests WHERE kind = 'extension'") == {"n": 0}
    ext = chat.pay.db.fetch_one("SELECT status, payment_request_id FROM session_extensions")
    assert ext == {"status": "expired", "payment_request_id": None}
    assert chat.status(session_id) == "closing"
    accounted(chat.pay)
