"""force-pairing-timeout ends a search exactly as the deadline job does at its time, and
accept-latest-pending takes the newest request a mitra was asked, through the real accept."""

from __future__ import annotations

from typing import Any

from tests.chatflow import Chat
from tests.conftest import bearer

TIMEOUT, ACCEPT = "/internal/_test/force-pairing-timeout", "/internal/_test/accept-latest-pending"


def _outcome(chat: Chat, session_id: str) -> dict[str, Any]:
    """What a search leaves behind once it has ended, without the ids and times that differ."""
    session = chat.pay.db.fetch_one(
        "SELECT s.status, s.failure_cause, s.failure_reason, s.search_expires_at, s.ended_at IS NOT NULL AS ended, "
        "s.choice_expires_at IS NOT NULL AS can_fallback, p.status AS payment, f.cause AS failure "
        "FROM chat_sessions s JOIN payment_requests p ON p.id = s.payment_request_id "
        "LEFT JOIN pairing_failures f ON f.payment_request_id = p.id WHERE s.id = %(s)s",
        {"s": session_id},
    )
    notes = chat.pay.db.fetch_all(
        "SELECT status FROM chat_request_notifications WHERE session_id = %(s)s", {"s": session_id}
    )
    return {**(session or {}), "notifications": sorted(n["status"] for n in notes)}


def _heard(chat: Chat, user_type: str, user_id: object, session_id: str) -> dict[str, Any]:
    frame = chat.heard.last(user_type, user_id, "pairing.expired", lambda f: f["data"]["session_id"] == session_id)
    return {k: v for k, v in frame["data"].items() if k != "session_id"}


def test_a_forced_blast_timeout_is_what_the_deadline_job_does(chat: Chat) -> None:
    mitra, _token = chat.mitra()
    forced_customer, timed_customer = chat.customer("Dipaksa"), chat.customer("Tepat Waktu")
    forced_payment, timed_payment = chat.pay_for(forced_customer), chat.pay_for(timed_customer)
    forced, timed = chat.session_of(forced_payment), chat.session_of(timed_payment)

    answer = chat.cc.simulate_post(TIMEOUT, json={"customer_id": forced_customer["user"]["id"]})
    assert answer.status_code == 200, answer.text
    doc = answer.json["data"]
    assert doc["session_id"] == forced
    assert doc["status"] == "expired"
    assert doc["cause"] == "PAIRING_TIMEOUT"
    assert doc["can_fallback"] is False
    assert chat.status(timed) == "searching"  # only the named search ended

    chat.due_now(timed, "search_expires_at")  # the other one reaches its time and the worker fires it
    chat.tick()
    outcome = _outcome(chat, forced)
    assert outcome == _outcome(chat, timed)
    assert outcome["status"] == "expired"
    assert outcome["payment"] == "failed_pairing"
    assert outcome["failure"] == "PAIRING_TIMEOUT"
    assert outcome["notifications"] == ["ignored"]
    assert _heard(chat, "customer", forced_customer["user"]["id"], forced) == _heard(
        chat, "customer", timed_customer["user"]["id"], timed
    )
    assert _heard(chat, "mitra", mitra["id"], forced) == _heard(chat, "mitra", mitra["id"], timed)


def test_a_forced_targeted_timeout_opens_the_fallback(chat: Chat) -> None:
    favourite, _token = chat.mitra("Favourite")
    customer = chat.customer()
    payment = chat.pay_for(customer, targeted_mitra_id=str(favourite["id"]))
    session_id = chat.session_of(payment)
    answer = chat.cc.simulate_post(TIMEOUT, json={"session_id": session_id})
    assert answer.status_code == 200, answer.text
    doc = answer.json["data"]
    assert (doc["cause"], doc["reason"], doc["can_fallback"]) == ("RETURNING_CHAT_TIMEOUT", "timeout", True)
    assert doc["targeted_mitra"] == {"id": str(favourite["id"]), "display_name": "Favourite"}
    assert chat.payment_status(payment) == "confirmed"  # still the customer's, for the fallback
    blast = chat.app.simulate_post("/api/client/chat/fallback-to-blast", headers=bearer(customer["access_token"]))
    assert blast.status_code == 200, blast.text


def test_force_pairing_timeout_refuses_what_is_not_searching(chat: Chat) -> None:
    customer, _mitra, _token, session_id = chat.paired()
    active = chat.cc.simulate_post(TIMEOUT, json={"session_id": session_id})
    assert active.status_code == 409
    assert active.json["error"]["code"] == "NOT_SEARCHING"
    assert active.json["error"]["details"] == {"status": "active"}
    assert chat.status(session_id) == "active"
    idle = chat.cc.simulate_post(TIMEOUT, json={"customer_id": customer["user"]["id"]})
    assert idle.status_code == 409
    assert idle.json["error"]["code"] == "NOT_SEARCHING"
    unknown = chat.cc.simulate_post(TIMEOUT, json={"session_id": "00000000-0000-4000-8000-000000000000"})
    assert unknown.status_code == 404
    assert unknown.json["error"]["code"] == "SESSION_NOT_FOUND"
    for body in ({}, {"session_id": session_id, "customer_id": customer["user"]["id"]}, {"session_id": "x"}):
        assert chat.cc.simulate_post(TIMEOUT, json=body).status_code == 422, body


def test_accept_latest_pending_takes_the_newest_request_through_the_real_accept(chat: Chat) -> None:
    mitra, _token = chat.mitra("Bestie Uji")
    other, _other_token = chat.mitra("Bestie Lain")
    first, second = chat.customer("Satu"), chat.customer("Dua")
    first_session = chat.session_of(chat.pay_for(first))
    second_payment = chat.pay_for(second)
    second_session = chat.session_of(second_payment)

    taken = chat.cc.simulate_post(ACCEPT, json={"phone": mitra["phone"]})
    assert taken.status_code == 200, taken.text
    doc = taken.json["data"]
    assert doc["id"] == second_session
    assert doc["status"] == "active"
    assert doc["mitra"]["id"] == str(mitra["id"])
    assert chat.payment_status(second_payment) == "consumed"
    assert chat.status(first_session) == "searching"
    paired = chat.heard.last("customer", second["user"]["id"], "session.paired")
    assert paired["data"]["session_id"] == second_session
    assert "pairing.taken" in chat.heard.of("mitra", other["id"], wait_for="pairing.taken")  # the others hear it

    assert chat.cc.simulate_post(ACCEPT, json={"mitra_id": str(mitra["id"])}).json["data"]["id"] == first_session
    none_left = chat.cc.simulate_post(ACCEPT, json={"mitra_id": str(mitra["id"])})
    assert none_left.status_code == 404
    assert none_left.json["error"]["code"] == "NO_PENDING_REQUEST"
    late = chat.cc.simulate_post(ACCEPT, json={"mitra_id": str(other["id"])})  # both were taken from Other
    assert late.status_code == 404
    assert late.json["error"]["code"] == "NO_PENDING_REQUEST"


def test_accept_latest_pending_answers_as_the_app_accept_would(chat: Chat) -> None:
    chat.config(max_customers_per_mitra=1)
    mitra, _token = chat.mitra()
    chat.session_of(chat.pay_for(chat.customer("Satu")))
    assert chat.cc.simulate_post(ACCEPT, json={"mitra_id": str(mitra["id"])}).status_code == 200
    chat.mitra("Bestie Lain")  # the next blast goes to the other mitra only (this one is full)...
    waiting = chat.session_of(chat.pay_for(chat.customer("Dua")))
    chat.pay.db.execute(  # ...unless it was asked just before it filled up, as a race leaves it
        "INSERT INTO chat_request_notifications (session_id, mitra_id, request_type) VALUES (%(s)s, %(m)s, 'blast')",
        {"s": waiting, "m": mitra["id"]},
    )
    full = chat.cc.simulate_post(ACCEPT, json={"mitra_id": str(mitra["id"])})
    assert full.status_code == 409
    assert full.json["error"]["code"] == "CAPACITY_FULL"
    unknown = chat.cc.simulate_post(ACCEPT, json={"phone": "+6281299988877"})
    assert unknown.status_code == 404
    assert unknown.json["error"]["code"] == "MITRA_NOT_FOUND"
