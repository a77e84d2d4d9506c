"""The customer's rights: export everything, erase the account (refused while a chat or payment is
open), tokens refused at once, accounting rows pseudonymised, the control center's audited erase."""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.chatflow import Chat
from tests.conftest import bearer


def _say(chat: Chat, token: str, session_id: str, text: str) -> None:
    sent = chat.app.simulate_post(
        f"/api/shared/chat/{session_id}/messages",
        headers=bearer(token),
        json={"client_message_id": str(uuid.uuid4()), "content": text},
    )
    assert sent.status_code == 201, sent.text


def _a_finished_chat(chat: Chat) -> tuple[dict[str, Any], str, str]:
    """(customer, mitra token, session id): a customer with a device, a chat both sides wrote in,
    then completed."""
    customer, _, mitra_token, session_id = chat.paired()
    me = customer["access_token"]
    put = chat.app.simulate_put(
        "/api/shared/devices/fcm-token", headers=bearer(me), json={"token": "phone-1", "platform": "android"}
    )
    assert put.status_code in (200, 204), put.text
    _say(chat, me, session_id, "aku lagi nggak baik-baik aja")
    _say(chat, mitra_token, session_id, "aku dengerin kok")
    return customer, mitra_token, session_id


def _complete(chat: Chat, session_id: str) -> None:
    chat.pay.db.execute(
        "UPDATE chat_sessions SET status = 'completed', completed_at = now() WHERE id = %(s)s", {"s": session_id}
    )


def test_export_holds_everything_and_no_secret(chat: Chat) -> None:
    customer, _, session_id = _a_finished_chat(chat)
    got = chat.app.simulate_get("/api/client/me/export", headers=bearer(customer["access_token"]))
    assert got.status_code == 200, got.text
    data = got.json["data"]
    assert data["profile"]["id"] == customer["user"]["id"]
    assert [s["id"] for s in data["sessions"]] == [session_id]
    assert [m["content"] for m in data["messages"]] == ["aku lagi nggak baik-baik aja"]  # their own words
    assert len(data["payments"]) == 1
    assert data["payments"][0]["session_id"] == session_id
    assert [d["platform"] for d in data["devices"]] == ["android"]
    text = json.dumps(data)
    assert "phone-1" not in text
    assert "refresh" not in text
    assert "hash" not in text  # no secret
    audit = chat.pay.db.fetch_all(
        "SELECT action, actor_type FROM privacy_audit WHERE customer_id = %(c)s", {"c": customer["user"]["id"]}
    )
    assert audit == [{"action": "export", "actor_type": "customer"}]


def test_erase_end_to_end(chat: Chat) -> None:
    customer, mitra_token, session_id = _a_finished_chat(chat)
    me, customer_id = customer["access_token"], customer["user"]["id"]
    live = chat.app.simulate_delete("/api/client/me", headers=bearer(me))
    assert live.status_code == 409
    assert live.json["error"]["code"] == "ERASE_BLOCKED_LIVE_SESSION"
    assert chat.app.simulate_get("/api/client/me", headers=bearer(me)).status_code == 200  # nothing happened
    _complete(chat, session_id)

    erased = chat.app.simulate_delete("/api/client/me", headers=bearer(me))
    assert erased.status_code == 200, erased.text
    assert erased.json["data"]["already_erased"] is False
    # Refused at once: the access token, and the refresh token it came with.
    assert chat.app.simulate_get("/api/client/me", headers=bearer(me)).status_code == 401
    refresh = chat.app.simulate_post("/api/shared/auth/refresh", json={"refresh_token": customer["refresh_token"]})
    assert refresh.status_code == 401
    db = chat.pay.db
    q = {"c": customer_id, "s": session_id}
    row = db.fetch_one("SELECT * FROM customers WHERE id = %(c)s", q)
    assert row is not None
    assert row["erased_at"] is not None
    assert (row["display_name"], row["phone"], row["email"]) == (None, None, None)
    assert db.fetch_one("SELECT count(*) AS n FROM customer_identities WHERE customer_id = %(c)s", q) == {"n": 0}
    assert db.fetch_one("SELECT count(*) AS n FROM device_tokens WHERE user_id = %(c)s", q) == {"n": 0}
    assert db.fetch_one("SELECT count(*) AS n FROM chat_messages WHERE session_id = %(s)s", q) == {"n": 0}
    # What accounting must keep stays, against the pseudonymous row.
    payment = db.fetch_one("SELECT * FROM payment_requests WHERE customer_id = %(c)s", q)
    assert payment is not None
    assert payment["amount"] > 0
    assert str(payment["session_id"]) == session_id
    session = db.fetch_one("SELECT * FROM chat_sessions WHERE id = %(s)s", q)
    assert session is not None
    assert session["transcript_purged_at"] is not None
    for log in db.fetch_all("SELECT raw_body FROM webhook_logs WHERE payment_request_id = %(p)s", {"p": payment["id"]}):
        assert b"redacted" in bytes(log["raw_body"])
    audit = db.fetch_one("SELECT * FROM privacy_audit WHERE customer_id = %(c)s AND action = 'erase'", q)
    assert audit is not None
    assert audit["actor_type"] == "customer"
    assert audit["details"]["messages"] == 2
    # The Bestie's view of the old chat lost the transcript, not the session.
    listed = chat.app.simulate_get(f"/api/shared/chat/{session_id}/messages", headers=bearer(mitra_token))
    assert listed.status_code == 200
    assert listed.json["data"]["items"] == []


def test_an_open_payment_refuses_the_erasure(chat: Chat) -> None:
    from tests.payflow import create_payment, tier_of

    chat.mitra()  # someone available, or no payment is taken
    customer = chat.customer()
    created = create_payment(chat.app, customer, tier_of(chat.pay, 15))
    assert created.status_code == 201, created.text
    refused = chat.app.simulate_delete("/api/client/me", headers=bearer(customer["access_token"]))
    assert refused.status_code == 409
    assert refused.json["error"]["code"] == "ERASE_BLOCKED_OPEN_PAYMENT"


def test_the_control_center_erases_on_request_audited_and_idempotent(chat: Chat, cc_login) -> None:
    customer, _, session_id = _a_finished_chat(chat)
    _complete(chat, session_id)
    customer_id = customer["user"]["id"]
    url = f"/internal/customers/{customer_id}/erase"
    _, operator, _ = cc_login("operator")
    assert chat.cc.simulate_post(url, headers=bearer(operator), json={"reason": "request by e-mail"}).status_code == 403
    admin_user, admin, _ = cc_login("admin")
    missing = chat.cc.simulate_post(url, headers=bearer(admin), json={})
    assert missing.status_code == 422
    first = chat.cc.simulate_post(url, headers=bearer(admin), json={"reason": "request by e-mail #812"})
    assert first.status_code == 200
    assert first.json["data"]["already_erased"] is False
    again = chat.cc.simulate_post(url, headers=bearer(admin), json={"reason": "request by e-mail #812"})
    assert again.status_code == 200
    assert again.json["data"]["already_erased"] is True
    assert again.json["data"]["erased_at"] == first.json["data"]["erased_at"]
    assert chat.app.simulate_get("/api/client/me", headers=bearer(customer["access_token"])).status_code == 401
    audit = chat.pay.db.fetch_all(
        "SELECT actor_type, actor_id, reason, details FROM privacy_audit WHERE customer_id = %(c)s ORDER BY id",
        {"c": customer_id},
    )
    assert [(a["actor_type"], str(a["actor_id"]), a["reason"]) for a in audit] == [
        ("cc_user", str(admin_user["id"]), "request by e-mail #812"),
        ("cc_user", str(admin_user["id"]), "request by e-mail #812"),
    ]
    assert audit[1]["details"] == {"already_erased": True}
    unknown = chat.cc.simulate_post(
        f"/internal/customers/{uuid.uuid4()}/erase", headers=bearer(admin), json={"reason": "x y z"}
    )
    assert unknown.status_code == 404


def test_a_payment_racing_the_erasure_is_not_taken(chat: Chat) -> None:
    """A payment request already past authentication when the erasure starts waits for it, then
    finds the account gone: 401, no payment row, no invoice."""
    import threading

    import psycopg

    from tests.payflow import create_payment, tier_of

    chat.mitra()
    customer = chat.customer()
    tier = tier_of(chat.pay, 15)
    with psycopg.connect(chat.pay.settings.database_url) as eraser:  # holds the lock as erase() does
        eraser.execute("SELECT 1 FROM customers WHERE id = %s FOR UPDATE", [customer["user"]["id"]])
        eraser.execute("UPDATE customers SET erased_at = now() WHERE id = %s", [customer["user"]["id"]])
        answers: list[Any] = []
        paying = threading.Thread(target=lambda: answers.append(create_payment(chat.app, customer, tier)))
        paying.start()
        paying.join(timeout=1.0)
        assert paying.is_alive()  # waiting on the erasure's lock
        eraser.commit()
    paying.join(timeout=10)
    assert answers, answers[0].text if answers else "no answer"
    assert answers[0].status_code == 401, answers[0].text if answers else "no answer"
    assert chat.pay.db.fetch_one("SELECT count(*) AS n FROM payment_requests") == {"n": 0}
