"""The "Pembayaran" tab's list: each pending request says its kind (session or extension) and the
call name of the Bestie the money is for."""

from __future__ import annotations

from typing import Any

from tests.chatflow import Chat
from tests.conftest import bearer
from tests.lib.payments.test_extension_payments import _approved as approved_extension
from tests.payflow import create_payment, tier_of

PENDING = "/api/client/payment-requests/pending"


def _pending(chat: Chat, customer: dict[str, Any], **query: Any) -> dict[str, Any]:
    result = chat.app.simulate_get(PENDING, headers=bearer(customer["access_token"]), params=query)
    assert result.status_code == 200, result.text
    page: dict[str, Any] = result.json["data"]
    return page


def test_pending_requests_carry_their_kind_and_the_besties_call_name(chat: Chat) -> None:
    mitra, _ = chat.mitra("Ayu")
    targeted, blast = chat.customer(), chat.customer()
    for customer, extra in ((targeted, {"targeted_mitra_id": str(mitra["id"])}), (blast, {})):
        created = create_payment(chat.app, customer, tier_of(chat.pay), **extra)
        assert created.status_code == 201, created.text
    [one] = _pending(chat, targeted)["items"]
    assert one["kind"] == "session"
    assert one["mitra_call_name"] == "Ayu"
    [other] = _pending(chat, blast)["items"]
    assert other["kind"] == "session"
    assert other["mitra_call_name"] is None  # nobody has accepted a blast yet

    # An approved extension is paid through a request of its own, for the session's Bestie.
    customer, _, session_id, approved = approved_extension(chat)
    holder = chat.pay.db.fetch_one(
        "SELECT m.display_name FROM chat_sessions s JOIN mitras m ON m.id = s.mitra_id WHERE s.id = %(s)s",
        {"s": session_id},
    )
    assert holder is not None
    page = _pending(chat, customer)
    [extension] = page["items"]
    assert extension["id"] == approved["payment_request_id"]
    assert extension["kind"] == "extension"
    assert extension["mitra_call_name"] == holder["display_name"]
    assert set(page) == {"items", "next_cursor", "has_more"}
    assert page["has_more"] is False


def test_pending_list_refuses_a_forged_cursor(chat: Chat) -> None:
    customer = chat.customer()
    forged = chat.app.simulate_get(PENDING, headers=bearer(customer["access_token"]), params={"cursor": "bm90LWpzb24"})
    assert forged.status_code == 422
    assert forged.json["error"]["code"] == "VALIDATION_ERROR"
