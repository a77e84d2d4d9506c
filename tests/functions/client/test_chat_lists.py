"""The customer's chat lists as the original served them: the history by when each session ended,
and the besties with the online flag the app reads (and `available`, kept from the shipped list)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from falcon import testing

from lib.services import Services
from tests.chatflow import Chat
from tests.conftest import bearer
from tests.helpers import add_sessions

HISTORY, BESTIES = "/api/client/chat/history", "/api/client/chat/besties"


def _walk(client: testing.TestClient, path: str, token: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the whole list in one page, the same list read a row at a time through the cursors)."""
    whole = client.simulate_get(path, headers=bearer(token), params={"limit": 100})
    assert whole.status_code == 200, whole.text
    paged: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.simulate_get(
            path, headers=bearer(token), params={"limit": 1} | ({"cursor": cursor} if cursor else {})
        )
        assert page.status_code == 200, page.text
        paged += page.json["data"]["items"]
        cursor = page.json["data"]["next_cursor"]
        if cursor is None:
            return whole.json["data"]["items"], paged


def test_history_lists_the_most_recently_ended_first_and_pages_in_that_order(
    public: testing.TestClient, services: Services, anonymous, make_mitra
) -> None:
    customer = anonymous()
    mitra = make_mitra()
    # (created minutes ago, ended minutes ago): creation order and end order disagree, and two end at once.
    shapes = {"long": (300, 10), "short": (100, 90), "tie_a": (200, 50), "tie_b": (150, 50), "old": (400, 300)}
    now = datetime.now(UTC)
    ids = {}
    for name, (created, ended) in shapes.items():
        row = services.db.fetch_one(
            "INSERT INTO chat_sessions (customer_id, mitra_id, status, duration_minutes, created_at, started_at, "
            "expires_at, ended_at) VALUES (%(c)s, %(m)s, 'completed', 15, %(cr)s, %(cr)s, %(en)s, %(en)s) RETURNING id",
            {
                "c": customer["user"]["id"],
                "m": mitra["id"],
                "cr": now - timedelta(minutes=created),
                "en": now - timedelta(minutes=ended),
            },
        )
        assert row is not None
        ids[str(row["id"])] = name
    services.db.execute(  # live and unpaired sessions are not history
        "INSERT INTO chat_sessions (customer_id, status) VALUES (%(c)s, 'cancelled')", {"c": customer["user"]["id"]}
    )
    whole, paged = _walk(public, HISTORY, customer["access_token"])
    ties = sorted((i for i, n in ids.items() if n.startswith("tie")), reverse=True)  # the id breaks a tie
    assert [ids[i["id"]] for i in whole] == ["long", ids[ties[0]], ids[ties[1]], "short", "old"]
    assert [i["id"] for i in paged] == [i["id"] for i in whole]
    forged = public.simulate_get(HISTORY, headers=bearer(customer["access_token"]), params={"cursor": "WzEsMl0"})
    assert forged.status_code == 422


def test_besties_say_who_is_online_and_who_can_take_a_curhat_lagi(chat: Chat) -> None:
    chat.config(max_customers_per_mitra=1)
    online, _ = chat.mitra("Online")
    busy, _ = chat.mitra("Sibuk")
    offline, _ = chat.mitra("Offline", online=False)
    customer = chat.customer()
    for n, mitra in enumerate((offline, busy, online)):  # the most recent last: it is listed first
        chat.pay.db.execute(
            "INSERT INTO chat_sessions (customer_id, mitra_id, status, duration_minutes, started_at, ended_at) "
            "VALUES (%(c)s, %(m)s, 'completed', 15, now() - make_interval(hours => %(h)s), now())",
            {"c": customer["user"]["id"], "m": mitra["id"], "h": 3 - n},
        )
    add_sessions(chat.pay, busy["id"], 1)  # a chat with someone else fills its only slot
    whole, paged = _walk(chat.app, BESTIES, customer["access_token"])
    flags = {b["display_name"]: (b["is_online"], b["available"]) for b in whole}
    assert flags == {"Online": (True, True), "Sibuk": (True, False), "Offline": (False, False)}
    assert [b["display_name"] for b in whole] == ["Online", "Sibuk", "Offline"]
    assert [b["id"] for b in paged] == [b["id"] for b in whole]
