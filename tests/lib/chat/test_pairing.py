"""Pairing: a paid request opens a blast or a targeted request; first accept wins; timeouts,
declines, cancel and the fallback; what every party hears."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from lib.chat.pairing import start_pairing
from lib.payments.sweeps import reemit_unpaired
from tests.chatflow import Chat
from tests.conftest import bearer
from tests.payflow import paid_body, send_callback, tier_of


def test_a_paid_request_blasts_every_available_mitra_and_the_first_accept_wins(chat: Chat) -> None:
    first, first_token = chat.mitra("Ayu")
    second, second_token = chat.mitra("Bunga")
    offline, _ = chat.mitra("Citra", online=False)
    customer = chat.customer()
    payment = chat.pay_for(customer)
    session_id = chat.session_of(payment)
    assert chat.status(session_id) == "searching"
    pending = chat.app.simulate_get("/api/mitra/chat-requests/pending", headers=bearer(first_token)).json["data"]
    assert [i["session_id"] for i in pending["items"]] == [session_id]
    assert pending["items"][0]["customer_call_name"] == "Pelanggan"
    assert pending["items"][0]["request_type"] == "blast"
    assert chat.heard.of("mitra", first["id"], wait_for="pairing.request") == ["pairing.request"]
    assert chat.heard.of("mitra", offline["id"]) == []

    won = chat.accept(first_token, session_id)
    assert won.status_code == 200, won.text
    assert won.json["data"]["status"] == "active"
    assert won.json["data"]["mitra"]["display_name"] == "Ayu"
    assert chat.accept(first_token, session_id).json["data"]["id"] == session_id  # the winner's repeat
    lost = chat.accept(second_token, session_id)
    assert lost.status_code == 409
    assert lost.json["error"]["code"] == "REQUEST_TAKEN"
    assert chat.payment_status(payment) == "consumed"
    assert chat.heard.of("mitra", second["id"], wait_for="pairing.taken")[-1] == "pairing.taken"
    paired = chat.heard.last("customer", customer["user"]["id"], "session.paired")
    assert paired["data"]["mitra_name"] == "Ayu"
    assert paired["data"]["session_id"] == session_id
    notes = chat.pay.db.fetch_all(
        "SELECT mitra_id, status FROM chat_request_notifications WHERE session_id = %(s)s ORDER BY status",
        {"s": session_id},
    )
    assert {str(n["mitra_id"]): n["status"] for n in notes} == {
        str(first["id"]): "accepted",
        str(second["id"]): "missed",
    }
    active = chat.app.simulate_get("/api/client/chat/active", headers=bearer(customer["access_token"])).json["data"]
    assert active["pairing"] is None
    assert active["session"]["id"] == session_id
    assert active["session"]["unread_count"] == 0
    stamped = chat.pay.db.fetch_one(
        "SELECT first_active_session_at IS NOT NULL AS stamped FROM customers WHERE id = %(c)s",
        {"c": customer["user"]["id"]},
    )
    assert stamped == {"stamped": True}


def test_fifty_mitras_accepting_one_blast_at_once_make_exactly_one_session(chat: Chat) -> None:
    mitras = [chat.mitra(f"Bestie {i}") for i in range(50)]
    customer = chat.customer()
    session_id = chat.session_of(chat.pay_for(customer))
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(lambda m: chat.accept(m[1], session_id), mitras))
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) == 1, codes
    assert codes.count(409) == 49, codes
    assert {r.json["error"]["code"] for r in results if r.status_code == 409} == {"REQUEST_TAKEN"}
    sessions = chat.pay.db.fetch_all("SELECT status, mitra_id FROM chat_sessions")
    assert len(sessions) == 1
    assert sessions[0]["status"] == "active"
    winner = next(r for r in results if r.status_code == 200).json["data"]["mitra"]["id"]
    assert str(sessions[0]["mitra_id"]) == winner


def test_a_mitra_not_asked_gets_404_and_a_late_accept_gets_410(chat: Chat) -> None:
    _, token = chat.mitra("Asked")
    _, stranger_token = chat.mitra("Not asked", online=False)
    customer = chat.customer()
    payment = chat.pay_for(customer)
    session_id = chat.session_of(payment)
    chat.app.simulate_post("/api/mitra/status/online", headers=bearer(stranger_token))
    assert chat.accept(stranger_token, session_id).status_code == 404
    cancelled = chat.app.simulate_post("/api/client/chat/cancel", headers=bearer(customer["access_token"]))
    assert cancelled.status_code == 200
    assert cancelled.json["data"]["status"] == "cancelled"
    late = chat.accept(token, session_id)
    assert late.status_code == 410
    assert late.json["error"]["code"] == "REQUEST_EXPIRED"
    assert chat.status(session_id) == "cancelled"
    assert chat.payment_status(payment) == "failed_pairing"
    failure = chat.pay.db.fetch_one("SELECT cause, session_id FROM pairing_failures")
    assert failure is not None
    assert failure["cause"] == "CANCELLED"
    assert str(failure["session_id"]) == session_id
    again = chat.app.simulate_post("/api/client/chat/cancel", headers=bearer(customer["access_token"]))
    assert again.status_code == 409
    assert again.json["error"]["code"] == "NO_ACTIVE_REQUEST"


def test_decline_keeps_a_blast_open_and_a_full_mitra_cannot_accept(chat: Chat) -> None:
    chat.config(max_customers_per_mitra=1)
    busy, busy_token = chat.mitra("Busy")
    chat.mitra("Other")
    first = chat.customer("Satu")
    first_session = chat.session_of(chat.pay_for(first))
    assert chat.accept(busy_token, first_session).status_code == 200
    second = chat.customer("Dua")
    # Busy is full now, so the second blast reaches only Other...
    second_session = chat.session_of(chat.pay_for(second))
    asked = chat.pay.db.fetch_all(
        "SELECT mitra_id FROM chat_request_notifications WHERE session_id = %(s)s", {"s": second_session}
    )
    assert str(busy["id"]) not in {str(a["mitra_id"]) for a in asked}
    # ...and a full mitra that was asked earlier is refused at accept.
    chat.pay.db.execute(
        "INSERT INTO chat_request_notifications (session_id, mitra_id, request_type) VALUES (%(s)s, %(m)s, 'blast')",
        {"s": second_session, "m": busy["id"]},
    )
    full = chat.accept(busy_token, second_session)
    assert full.status_code == 409
    assert full.json["error"]["code"] == "CAPACITY_FULL"
    declined = chat.app.simulate_post(f"/api/mitra/chat-requests/{second_session}/decline", headers=bearer(busy_token))
    assert declined.status_code == 204
    assert chat.status(second_session) == "searching"
    status = chat.app.simulate_get(f"/api/mitra/chat-requests/{second_session}/status", headers=bearer(busy_token))
    assert status.json["data"] == {"session_id": second_session, "status": "open", "response": "declined"}


def test_a_blast_nobody_takes_fails_and_is_listed_for_a_refund(chat: Chat) -> None:
    mitra, token = chat.mitra()
    customer = chat.customer()
    payment = chat.pay_for(customer)
    session_id = chat.session_of(payment)
    chat.tick()
    assert chat.status(session_id) == "searching"  # not due yet
    chat.due_now(session_id, "search_expires_at")
    chat.tick()
    assert chat.status(session_id) == "expired"
    assert chat.payment_status(payment) == "failed_pairing"
    expired = chat.heard.last("customer", customer["user"]["id"], "pairing.expired")
    assert expired["data"]["cause"] == "PAIRING_TIMEOUT"
    assert expired["data"]["can_fallback"] is False
    assert chat.heard.of("mitra", mitra["id"], wait_for="pairing.expired")[-1] == "pairing.expired"
    note = chat.pay.db.fetch_one("SELECT status FROM chat_request_notifications")
    assert note == {"status": "ignored"}
    assert chat.accept(token, session_id).status_code == 410
    failures = chat.cc.simulate_get("/internal/failed-pairings", headers=bearer(chat.admin())).json["data"]["items"]
    assert [f["cause"] for f in failures] == ["PAIRING_TIMEOUT"]
    active = chat.app.simulate_get("/api/client/chat/active", headers=bearer(customer["access_token"])).json["data"]
    assert active == {"pairing": None, "session": None}


def test_targeted_timeout_then_fallback_to_blast_with_the_same_payment(chat: Chat) -> None:
    favourite, _favourite_token = chat.mitra("Favourite")
    other, other_token = chat.mitra("Other")
    customer = chat.customer()
    payment = chat.pay_for(customer, targeted_mitra_id=str(favourite["id"]))
    targeted = chat.session_of(payment)
    asked = chat.pay.db.fetch_all("SELECT mitra_id, request_type FROM chat_request_notifications")
    assert [(str(a["mitra_id"]), a["request_type"]) for a in asked] == [(str(favourite["id"]), "targeted")]
    assert chat.heard.of("mitra", other["id"]) == []
    chat.due_now(targeted, "search_expires_at")
    chat.tick()
    assert chat.payment_status(payment) == "confirmed"  # still the customer's to use
    heard = chat.heard.last("customer", customer["user"]["id"], "pairing.expired")["data"]
    assert heard["cause"] == "RETURNING_CHAT_TIMEOUT"
    assert heard["reason"] == "timeout"
    assert heard["can_fallback"]
    active = chat.app.simulate_get("/api/client/chat/active", headers=bearer(customer["access_token"])).json["data"]
    assert active["pairing"]["cause"] == "RETURNING_CHAT_TIMEOUT"
    assert active["pairing"]["can_fallback"] is True
    assert active["pairing"]["targeted_mitra"]["display_name"] == "Favourite"

    blast = chat.app.simulate_post("/api/client/chat/fallback-to-blast", headers=bearer(customer["access_token"]))
    assert blast.status_code == 200, blast.text
    new_session = blast.json["data"]["session_id"]
    assert new_session != targeted
    assert blast.json["data"]["request_type"] == "blast"
    assert chat.session_of(payment) == new_session
    assert chat.accept(other_token, new_session).status_code == 200
    assert chat.payment_status(payment) == "consumed"
    again = chat.app.simulate_post("/api/client/chat/fallback-to-blast", headers=bearer(customer["access_token"]))
    assert again.status_code == 410


def test_a_lapsed_fallback_window_leaves_chat_active_before_the_sweep_clears_it(chat: Chat) -> None:
    favourite, _token = chat.mitra("Favourite")
    customer = chat.customer()
    targeted = chat.session_of(chat.pay_for(customer, targeted_mitra_id=str(favourite["id"])))
    chat.due_now(targeted, "search_expires_at")
    chat.tick()

    def active() -> dict[str, Any]:
        got = chat.app.simulate_get("/api/client/chat/active", headers=bearer(customer["access_token"]))
        return cast(dict[str, Any], got.json["data"])

    assert active()["pairing"]["session_id"] == targeted
    chat.due_now(targeted, "choice_expires_at")  # the worker has not swept it yet: the row still has it
    assert active() == {"pairing": None, "session": None}


def test_a_targeted_decline_ends_the_wait_and_an_unused_fallback_fails_the_payment(chat: Chat) -> None:
    favourite, favourite_token = chat.mitra("Favourite")
    customer = chat.customer()
    payment = chat.pay_for(customer, targeted_mitra_id=str(favourite["id"]))
    targeted = chat.session_of(payment)
    chat.app.simulate_post(f"/api/mitra/chat-requests/{targeted}/decline", headers=bearer(favourite_token))
    heard = chat.heard.last("customer", customer["user"]["id"], "pairing.expired")["data"]
    assert heard["reason"] == "declined"
    assert chat.status(targeted) == "expired"
    chat.due_now(targeted, "choice_expires_at")
    chat.tick()
    assert chat.payment_status(payment) == "failed_pairing"
    assert chat.pay.db.fetch_one("SELECT cause FROM pairing_failures") == {"cause": "RETURNING_CHAT_TIMEOUT"}


def test_the_customer_may_give_up_the_fallback(chat: Chat) -> None:
    favourite, token = chat.mitra("Favourite")
    customer = chat.customer()
    payment = chat.pay_for(customer, targeted_mitra_id=str(favourite["id"]))
    chat.app.simulate_post(f"/api/mitra/chat-requests/{chat.session_of(payment)}/decline", headers=bearer(token))
    gave_up = chat.app.simulate_post("/api/client/chat/cancel", headers=bearer(customer["access_token"]))
    assert gave_up.status_code == 200
    assert chat.payment_status(payment) == "failed_pairing"


def test_nobody_to_ask_fails_at_once(chat: Chat) -> None:
    _mitra, token = chat.mitra()
    customer = chat.customer()
    created = chat.app.simulate_post(
        "/api/client/payment-requests",
        headers=bearer(customer["access_token"]),
        json={"mode": "chat", "tier_id": tier_of(chat.pay)},
    ).json["data"]
    chat.app.simulate_post("/api/mitra/status/offline", headers=bearer(token))  # gone before the money arrives
    send_callback(chat.app, paid_body(created))
    session_id = chat.session_of(created)
    assert chat.status(session_id) == "expired"
    assert (
        chat.heard.last("customer", customer["user"]["id"], "pairing.expired")["data"]["cause"] == "NO_MITRA_AVAILABLE"
    )
    assert chat.payment_status(created) == "failed_pairing"


def test_pairing_starts_once_however_often_the_payment_is_confirmed(chat: Chat) -> None:
    chat.mitra()
    customer = chat.customer()
    payment = chat.pay_for(customer)
    assert send_callback(chat.app, paid_body(payment)).json == {"ok": True, "duplicate": True}
    s = chat.pay
    assert start_pairing(s.db, s.valkey, s.config, s.chat_events, payment["id"]) is None
    assert chat.pay.db.fetch_one("SELECT count(*) AS n FROM chat_sessions") == {"n": 1}


def test_a_confirmed_payment_whose_pairing_never_started_is_picked_up_by_reemit(chat: Chat) -> None:
    chat.mitra()
    customer = chat.customer()
    payment = chat.pay_for(customer)
    # As if the process had died between confirming and starting the search.
    chat.pay.db.execute("DELETE FROM chat_request_notifications")
    chat.pay.db.execute("UPDATE payment_requests SET session_id = NULL, confirmed_at = now() - interval '1 minute'")
    chat.pay.db.execute("DELETE FROM chat_sessions")
    assert reemit_unpaired(chat.pay.db, chat.pay.payment_events) == [payment["id"]]
    assert chat.status(chat.session_of(payment)) == "searching"
