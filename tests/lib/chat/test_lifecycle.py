"""The session lifecycle: the server's clock, early end, goodbyes and the grace, capacity after
every transition, the topic flag and the control center's reroute."""

from __future__ import annotations

from typing import Any

from lib.presence.keys import capacity_key
from tests.chatflow import Chat
from tests.conftest import bearer


def _live(chat: Chat, mitra: dict[str, Any], token: str) -> tuple[int, str | None]:
    """The mitra's live sessions as its status says, and as the Valkey mirror holds them."""
    status = chat.app.simulate_get("/api/mitra/status", headers=bearer(token)).json["data"]
    mirrored = chat.pay.valkey.get(capacity_key(str(mitra["id"])))
    return int(status["active_session_count"]), str(mirrored) if mirrored is not None else None


def test_the_whole_path_from_webhook_to_completed(chat: Chat) -> None:
    mitra, token = chat.mitra("Ayu")
    customer = chat.customer()
    me = bearer(customer["access_token"])
    payment = chat.pay_for(customer, minutes=30)
    session_id = chat.session_of(payment)
    assert _live(chat, mitra, token) == (0, "0")
    accepted = chat.accept(token, session_id).json["data"]
    assert accepted["duration_minutes"] == 30
    assert _live(chat, mitra, token) == (1, "1")
    chat.app.simulate_post(
        f"/api/shared/chat/{session_id}/messages", headers=me, json={"client_message_id": "m1", "content": "Halo"}
    )
    info = chat.app.simulate_get(f"/api/shared/chat/{session_id}/info", headers=me).json["data"]
    assert info["status"] == "active"
    assert info["customer"] == {"call_name": "Pelanggan"}
    assert info["mitra"]["display_name"] == "Ayu"
    assert info["pending_extension"] is None
    assert "phone" not in str(info)

    chat.due_now(session_id, "expires_at")  # the time bought is up
    chat.tick()
    assert chat.status(session_id) == "closing"
    closing = chat.heard.last("customer", customer["user"]["id"], "session.closing")["data"]
    assert closing["ended_by"] == "system"
    assert chat.heard.of("mitra", mitra["id"], wait_for="session.closing")[-1] == "session.closing"
    assert _live(chat, mitra, token) == (1, "1")  # closing still holds the mitra's slot
    active = chat.app.simulate_get("/api/client/chat/active", headers=me).json["data"]
    assert active["session"]["status"] == "closing"
    assert active["session"]["closing"]["customer_done"] is False

    bye = chat.app.simulate_post(
        f"/api/shared/chat/{session_id}/closing-message", headers=me, json={"content": "Makasih"}
    )
    assert bye.status_code == 200
    assert bye.json["data"]["closing"]["customer_done"] is True
    twice = chat.app.simulate_post(f"/api/shared/chat/{session_id}/closing-message", headers=me, json={"skip": True})
    assert twice.status_code == 200  # one goodbye per side: the second changes nothing
    goodbye = chat.heard.last("mitra", mitra["id"], "message.new", where=lambda f: f["data"]["kind"] == "closing")
    assert goodbye["data"]["content"] == "Makasih"
    skip = chat.app.simulate_post(
        f"/api/shared/chat/{session_id}/closing-message", headers=bearer(token), json={"skip": True}
    )
    assert skip.json["data"]["status"] == "completed"
    assert chat.heard.of("customer", customer["user"]["id"], wait_for="session.completed")[-1] == "session.completed"
    assert _live(chat, mitra, token) == (0, "0")
    history = chat.app.simulate_get("/api/client/chat/history", headers=me).json["data"]["items"]
    assert [h["id"] for h in history] == [session_id]
    assert history[0]["ended_by"] == "system"
    assert (
        chat.app.simulate_get("/api/mitra/sessions/history", headers=bearer(token)).json["data"]["items"][0]["id"]
        == session_id
    )
    besties = chat.app.simulate_get("/api/client/chat/besties", headers=me).json["data"]["items"]
    assert [(b["display_name"], b["available"]) for b in besties] == [("Ayu", True)]
    assert chat.app.simulate_get("/api/client/chat/active", headers=me).json["data"] == {
        "pairing": None,
        "session": None,
    }


def test_the_goodbye_grace_completes_the_session(chat: Chat) -> None:
    customer, mitra, token, session_id = chat.paired()
    chat.app.simulate_post(f"/api/client/chat/{session_id}/end", headers=bearer(customer["access_token"]))
    assert chat.status(session_id) == "closing"
    chat.due_now(session_id, "closing_expires_at")
    chat.tick()
    row = chat.pay.db.fetch_one("SELECT status, ended_by FROM chat_sessions")
    assert row == {"status": "completed", "ended_by": "system_auto_close"}
    assert _live(chat, mitra, token) == (0, "0")
    late = chat.app.simulate_post(
        f"/api/shared/chat/{session_id}/closing-message", headers=bearer(token), json={"content": "Dadah"}
    )
    assert late.status_code == 409
    assert late.json["error"]["code"] == "SESSION_NOT_CLOSING"


def test_early_end_by_the_customer_always_and_by_the_mitra_only_when_enabled(chat: Chat) -> None:
    customer, _, token, session_id = chat.paired()
    refused = chat.app.simulate_post(f"/api/mitra/sessions/{session_id}/end", headers=bearer(token))
    assert refused.status_code == 403
    assert refused.json["error"]["code"] == "EARLY_END_DISABLED"
    chat.config(early_end_mitra_enabled=True)
    ended = chat.app.simulate_post(f"/api/mitra/sessions/{session_id}/end", headers=bearer(token))
    assert ended.status_code == 200
    assert ended.json["data"]["ended_by"] == "mitra"
    # The older path of the customer app: already closing, so the same document comes back.
    old_path = chat.app.simulate_post(f"/api/client/session/{session_id}/end", headers=bearer(customer["access_token"]))
    assert old_path.status_code == 200
    assert old_path.json["data"]["status"] == "closing"
    stranger = chat.customer("Lain")
    assert (
        chat.app.simulate_post(
            f"/api/client/chat/{session_id}/end", headers=bearer(stranger["access_token"])
        ).status_code
        == 404
    )


def test_topic_flag_confirm_step_latch_and_audit(chat: Chat) -> None:
    customer, _mitra, token, session_id = chat.paired()
    url = f"/api/shared/chat/sessions/{session_id}/topic"
    unconfirmed = chat.app.simulate_patch(url, headers=bearer(token), json={"topic_sensitivity": "sensitive"})
    assert unconfirmed.status_code == 409
    assert unconfirmed.json["error"]["code"] == "CONFIRMATION_REQUIRED"
    assert chat.pay.db.fetch_one("SELECT count(*) AS n FROM session_topic_audit") == {"n": 0}
    flagged = chat.app.simulate_patch(
        url, headers=bearer(token), json={"topic_sensitivity": "sensitive", "confirmed": True}
    )
    assert flagged.status_code == 200
    assert flagged.json["data"]["topic_sensitivity"] == "sensitive"
    heard = chat.heard.last("customer", customer["user"]["id"], "session.topic_updated")["data"]
    assert heard == {"session_id": session_id, "topic_sensitivity": "sensitive"}
    assert (
        chat.app.simulate_patch(
            url, headers=bearer(customer["access_token"]), json={"topic_sensitivity": "normal"}
        ).status_code
        == 403
    )
    back = chat.app.simulate_patch(url, headers=bearer(token), json={"topic_sensitivity": "normal"})
    assert back.status_code == 200
    chat.config(sensitive_flag_one_way_latch=True)
    chat.app.simulate_patch(url, headers=bearer(token), json={"topic_sensitivity": "sensitive", "confirmed": True})
    latched = chat.app.simulate_patch(url, headers=bearer(token), json={"topic_sensitivity": "normal"})
    assert latched.status_code == 409
    assert latched.json["error"]["code"] == "TOPIC_LATCHED"
    audit = chat.pay.db.fetch_all("SELECT old_value, new_value, confirmed FROM session_topic_audit ORDER BY id")
    assert [(a["old_value"], a["new_value"]) for a in audit] == [
        ("normal", "sensitive"),
        ("sensitive", "normal"),
        ("normal", "sensitive"),
    ]


def test_reroute_moves_a_session_and_both_capacities(chat: Chat) -> None:
    customer, first, first_token, session_id = chat.paired()
    second, second_token = chat.mitra("Kedua")
    offline, _ = chat.mitra("Offline", online=False)
    admin = bearer(chat.admin())
    url = f"/internal/sessions/{session_id}/reroute"
    unavailable = chat.cc.simulate_post(url, headers=admin, json={"mitra_id": str(offline["id"])})
    assert unavailable.status_code == 409
    assert unavailable.json["error"]["code"] == "MITRA_UNAVAILABLE"
    moved = chat.cc.simulate_post(url, headers=admin, json={"mitra_id": str(second["id"])})
    assert moved.status_code == 200, moved.text
    assert moved.json["data"]["mitra"]["id"] == str(second["id"])
    assert _live(chat, first, first_token) == (0, "0")
    assert _live(chat, second, second_token) == (1, "1")
    assert (
        chat.heard.last("customer", customer["user"]["id"], "session.rerouted")["data"]["mitra"]["display_name"]
        == "Kedua"
    )
    assert chat.heard.last("mitra", second["id"], "session.rerouted")["data"]["session"]["id"] == session_id
    assert chat.heard.of("mitra", first["id"], wait_for="session.rerouted")[-1] == "session.rerouted"
    assert chat.app.simulate_get(f"/api/shared/chat/{session_id}/info", headers=bearer(first_token)).status_code == 404
    assert chat.app.simulate_get(f"/api/shared/chat/{session_id}/info", headers=bearer(second_token)).status_code == 200
    record = chat.cc.simulate_get(f"/internal/sessions/{session_id}", headers=admin).json["data"]
    assert [r["to_mitra_id"] for r in record["reroutes"]] == [str(second["id"])]
    operator = bearer(chat._cc_login("operator")[1])
    assert chat.cc.simulate_post(url, headers=operator, json={"mitra_id": str(first["id"])}).status_code == 200
