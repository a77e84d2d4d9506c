"""The control center's one way to a transcript: admins only, a reason required, every read audited
in the same transaction, the read listed on the session's record."""

from __future__ import annotations

import uuid

from tests.chatflow import Chat
from tests.conftest import bearer


def _say(chat: Chat, token: str, session_id: str, text: str) -> None:
    sent = chat.app.simulate_post(
        f"/api/shared/chat/{session_id}/messages",
        headers=bearer(token),
        json={"client_message_id": str(uuid.uuid4()), "content": text},
    )
    assert sent.status_code == 201, sent.text


def test_an_admin_reads_a_transcript_with_a_reason_and_the_read_is_audited(chat: Chat, cc_login) -> None:
    customer, _, mitra_token, session_id = chat.paired()
    _say(chat, customer["access_token"], session_id, "aku takut cerita ke orang lain")
    _say(chat, mitra_token, session_id, "di sini aman, pelan-pelan aja")
    url = f"/internal/sessions/{session_id}/transcript"
    _, operator, _ = cc_login("operator")
    denied = chat.cc.simulate_post(url, headers=bearer(operator), json={"reason": "complaint #77"})
    assert denied.status_code == 403
    admin_user, admin, _ = cc_login("admin")
    assert chat.cc.simulate_post(url, headers=bearer(admin), json={}).status_code == 422
    assert chat.cc.simulate_post(url, headers=bearer(admin), json={"reason": "  "}).status_code == 422
    db = chat.pay.db
    assert db.fetch_one("SELECT count(*) AS n FROM transcript_reads") == {"n": 0}  # refused reads leave no row

    read = chat.cc.simulate_post(url, headers=bearer(admin), json={"reason": "complaint #77 from the customer"})
    assert read.status_code == 200, read.text
    doc = read.json["data"]
    assert [(m["sender_type"], m["content"]) for m in doc["messages"]] == [
        ("customer", "aku takut cerita ke orang lain"),
        ("mitra", "di sini aman, pelan-pelan aja"),
    ]
    audit = db.fetch_all("SELECT session_id, cc_user_id, reason, messages FROM transcript_reads")
    assert [(str(a["session_id"]), str(a["cc_user_id"]), a["reason"], a["messages"]) for a in audit] == [
        (session_id, str(admin_user["id"]), "complaint #77 from the customer", 2)
    ]
    record = chat.cc.simulate_get(f"/internal/sessions/{session_id}", headers=bearer(operator)).json["data"]
    assert [(r["cc_user_id"], r["reason"]) for r in record["transcript_reads"]] == [
        (str(admin_user["id"]), "complaint #77 from the customer")
    ]
    missing = chat.cc.simulate_post(
        f"/internal/sessions/{uuid.uuid4()}/transcript", headers=bearer(admin), json={"reason": "a b c"}
    )
    assert missing.status_code == 404
    assert db.fetch_one("SELECT count(*) AS n FROM transcript_reads") == {"n": 1}
