"""The control center's chat views: sessions with filters and one session's record, the
dashboard, mitra activity, customers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tests.chatflow import Chat
from tests.conftest import bearer


def test_sessions_list_filters_and_record(chat: Chat) -> None:
    customer, mitra, token, active = chat.paired()
    chat.app.simulate_patch(
        f"/api/shared/chat/sessions/{active}/topic",
        headers=bearer(token),
        json={"topic_sensitivity": "sensitive", "confirmed": True},
    )
    other = chat.customer("Lain")
    searching = chat.session_of(chat.pay_for(other))
    admin = bearer(chat.admin())
    listed = chat.cc.simulate_get("/internal/sessions", headers=admin).json["data"]
    assert [s["id"] for s in listed["items"]] == [searching, active]
    only = chat.cc.simulate_get("/internal/sessions", headers=admin, params={"status": "searching"}).json["data"]
    assert [s["id"] for s in only["items"]] == [searching]
    # The topic shows, and filters, for holders of sessions.topic (admins), each read audited.
    assert {s["id"]: s["topic_sensitivity"] for s in listed["items"]} == {searching: "normal", active: "sensitive"}
    by_topic = chat.cc.simulate_get("/internal/sessions", headers=admin, params={"topic_sensitivity": "sensitive"})
    assert [s["id"] for s in by_topic.json["data"]["items"]] == [active]
    audited = chat.pay.db.fetch_all("SELECT filter, sessions FROM topic_reads ORDER BY id")
    assert [(a["filter"], sorted(map(str, a["sessions"]))) for a in audited] == [
        (None, sorted([searching, active])),
        (None, [searching]),
        ("sensitive", [active]),
    ]
    # Everyone else sees no topic and is refused the filter out loud; nothing is audited for them.
    operator = bearer(chat._cc_login("operator")[1])
    plain = chat.cc.simulate_get("/internal/sessions", headers=operator).json["data"]
    assert {s["topic_sensitivity"] for s in plain["items"]} == {None}
    refused = chat.cc.simulate_get("/internal/sessions", headers=operator, params={"topic_sensitivity": "sensitive"})
    assert refused.status_code == 403
    assert refused.json["error"]["code"] == "FORBIDDEN"
    assert len(chat.pay.db.fetch_all("SELECT 1 FROM topic_reads")) == 3
    by_mitra = chat.cc.simulate_get("/internal/sessions", headers=admin, params={"mitra_id": str(mitra["id"])})
    assert [s["id"] for s in by_mitra.json["data"]["items"]] == [active]
    by_customer = chat.cc.simulate_get("/internal/sessions", headers=admin, params={"customer_id": other["user"]["id"]})
    assert [s["id"] for s in by_customer.json["data"]["items"]] == [searching]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (
        chat.cc.simulate_get("/internal/sessions", headers=admin, params={"from": future}).json["data"]["items"] == []
    )
    bad = chat.cc.simulate_get("/internal/sessions", headers=admin, params={"status": "nonsense"})
    assert bad.status_code == 422
    record = chat.cc.simulate_get(f"/internal/sessions/{active}", headers=admin).json["data"]
    assert record["customer_id"] == customer["user"]["id"]
    assert record["notifications"][0]["status"] == "accepted"
    assert record["topic_sensitivity"] == "sensitive"  # one session's record, opened on purpose
    assert [t["new_value"] for t in record["topic_changes"]] == ["sensitive"]
    assert [r["filter"] for r in record["topic_reads"]][:2] == [None, "sensitive"]  # who saw its flag in a list
    assert "messages" not in record  # transcripts are not part of the control center's views
    assert (
        chat.cc.simulate_get(f"/internal/sessions/{active}", headers=bearer(chat._cc_login("operator")[1])).status_code
        == 200
    )


def test_dashboard_and_mitra_activity(chat: Chat) -> None:
    chat.paired()
    _, other_token = chat.mitra("Penolak")
    second = chat.customer("Kedua")
    searching = chat.session_of(chat.pay_for(second))
    chat.app.simulate_post(f"/api/mitra/chat-requests/{searching}/decline", headers=bearer(other_token))
    admin = bearer(chat.admin())
    board = chat.cc.simulate_get("/internal/dashboard", headers=admin).json["data"]
    assert board["mitras_online"] == 2
    assert board["searching_requests"] == 1
    assert board["active_sessions"] == 1
    assert board["sessions_today"] == 1
    assert board["revenue_today"] == 60000
    assert board["open_failed_pairings"] == 0
    assert board["mitras_available"] == 2
    assert board["sensitive_sessions"] == 0
    activity = chat.cc.simulate_get("/internal/mitra-activity", headers=admin).json["data"]["items"]
    by_name = {a["display_name"]: a for a in activity}
    assert by_name["Bestie"]["accepted"] == 1
    assert by_name["Bestie"]["notified"] == 2
    assert by_name["Bestie"]["acceptance_rate"] == 0.5
    assert by_name["Penolak"]["declined"] == 1
    assert by_name["Penolak"]["avg_response_seconds"] is not None
    assert chat.cc.simulate_get("/internal/dashboard", headers=bearer(chat._cc_login("operator")[1])).status_code == 200


def test_customers_list_and_record(chat: Chat) -> None:
    customer, _, _, _ = chat.paired()
    chat.customer("Zara")
    admin = bearer(chat.admin())
    listed = chat.cc.simulate_get("/internal/customers", headers=admin).json["data"]["items"]
    assert {c["call_name"] for c in listed} >= {"Pelanggan", "Zara"}
    found = chat.cc.simulate_get("/internal/customers", headers=admin, params={"q": "zar"}).json["data"]["items"]
    assert [c["call_name"] for c in found] == ["Zara"]
    record = chat.cc.simulate_get(f"/internal/customers/{customer['user']['id']}", headers=admin).json["data"]
    assert record["sessions"] == 1
    assert record["payments"] == 1
    assert record["paid_total"] == 30000
    assert record["first_active_session_at"] is not None
    assert chat.cc.simulate_get(f"/internal/customers/{uuid.uuid4()}", headers=admin).status_code == 404
