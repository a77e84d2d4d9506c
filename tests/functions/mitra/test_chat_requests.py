"""The mitra's request lists and the original's paths: recent lists the open requests first,
/api/mitra/chat/pending is chat-requests/pending, and chat-requests/sessions/{id}/end is the early end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from falcon import testing

from lib.services import Services
from tests.chatflow import Chat
from tests.conftest import bearer

RECENT, PENDING, ORIGINAL_PENDING = (
    "/api/mitra/chat-requests/recent",
    "/api/mitra/chat-requests/pending",
    "/api/mitra/chat/pending",
)


def _request(services: Services, mitra_id: Any, minutes_ago: int, session: str, answer: str = "notified") -> str:
    """A request this mitra was notified of `minutes_ago`, its search `session` (searching, active,
    cancelled ...) and the mitra's `answer`; returns the session id."""
    row = services.db.fetch_one(
        "WITH c AS (INSERT INTO customers (display_name) VALUES ('Seed') RETURNING id), "
        "s AS (INSERT INTO chat_sessions (customer_id, status, duration_minutes, search_expires_at) "
        "SELECT c.id, %(st)s, 15, now() + interval '1 minute' FROM c RETURNING id) "
        "INSERT INTO chat_request_notifications (session_id, mitra_id, request_type, status, notified_at) "
        "SELECT s.id, %(m)s, 'blast', %(a)s, %(at)s FROM s RETURNING session_id",
        {
            "st": session,
            "m": mitra_id,
            "a": answer,
            "at": datetime.now(UTC) - timedelta(minutes=minutes_ago),
        },
    )
    assert row is not None
    return str(row["session_id"])


def _pages(public: testing.TestClient, path: str, token: str) -> tuple[list[str], list[str]]:
    """The session ids of the whole list, and of the same list read one row at a time."""
    whole = public.simulate_get(path, headers=bearer(token), params={"limit": 100})
    assert whole.status_code == 200, whole.text
    paged: list[str] = []
    cursor = None
    while True:
        query = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        page = public.simulate_get(path, headers=bearer(token), params=query).json["data"]
        paged += [i["session_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return [i["session_id"] for i in whole.json["data"]["items"]], paged


def test_recent_lists_open_requests_first_then_newest_first(
    public: testing.TestClient, services: Services, mitra_login
) -> None:
    mitra, token = mitra_login()
    other, _ = mitra_login()
    declined = _request(services, mitra["id"], 1, "searching", "declined")  # newest, but answered
    taken = _request(services, mitra["id"], 2, "active", "missed")
    old_open = _request(services, mitra["id"], 30, "searching")  # oldest, but still open to me
    new_open = _request(services, mitra["id"], 3, "searching")
    cancelled = _request(services, mitra["id"], 20, "cancelled")  # the search ended unanswered
    _request(services, other["id"], 0, "searching")  # another mitra's
    whole, paged = _pages(public, RECENT, token)
    assert whole == [new_open, old_open, declined, taken, cancelled]
    assert paged == whole  # the cursor follows the order, across the open/answered boundary
    items = public.simulate_get(RECENT, headers=bearer(token)).json["data"]["items"]
    assert [i["response"] for i in items] == ["notified", "notified", "declined", "missed", "notified"]
    assert public.simulate_get(RECENT, headers=bearer(token), params={"cursor": "WzEsMl0"}).status_code == 422
    # The original's /api/mitra/chat/pending is the same list as chat-requests/pending.
    assert _pages(public, ORIGINAL_PENDING, token) == _pages(public, PENDING, token) == ([new_open, old_open],) * 2
    first = public.simulate_get(ORIGINAL_PENDING, headers=bearer(token)).json["data"]["items"][0]
    assert set(first) == {
        "session_id",
        "request_type",
        "customer_call_name",
        "mode",
        "duration_minutes",
        "topic_sensitivity",
        "notified_at",
        "expires_at",
    }


def test_original_pending_path_is_for_mitras_only(public: testing.TestClient, anonymous) -> None:
    customer = anonymous()
    assert public.simulate_get(ORIGINAL_PENDING).status_code == 401
    assert public.simulate_get(ORIGINAL_PENDING, headers=bearer(customer["access_token"])).status_code == 403


def test_the_originals_early_end_path_ends_like_the_mitra_session_end(chat: Chat) -> None:
    _, _, token, session_id = chat.paired()
    path = f"/api/mitra/chat-requests/sessions/{session_id}/end"
    refused = chat.app.simulate_post(path, headers=bearer(token))
    assert refused.status_code == 403
    assert refused.json["error"]["code"] == "EARLY_END_DISABLED"
    assert chat.status(session_id) == "active"
    chat.config(early_end_mitra_enabled=True)
    _, stranger = chat.mitra("Lain")
    assert chat.app.simulate_post(path, headers=bearer(stranger)).status_code == 404  # not its session
    ended = chat.app.simulate_post(path, headers=bearer(token))
    assert ended.status_code == 200, ended.text
    assert ended.json["data"]["status"] == "closing"
    assert ended.json["data"]["ended_by"] == "mitra"
    assert chat.status(session_id) == "closing"
    bad = chat.app.simulate_post("/api/mitra/chat-requests/sessions/not-a-uuid/end", headers=bearer(token))
    assert bad.status_code == 404


def test_a_mitra_who_lost_the_blast_does_not_see_the_winners_topic_flag(chat: Chat) -> None:
    """The topic in a request is the payment's for every mitra asked; once the session is
    another mitra's, a flag that mitra sets later is theirs alone (API.md: the previous mitra
    gets 404 on the session)."""
    _, loser_token = chat.mitra("Kalah")
    _, winner_token = chat.mitra("Menang")
    customer = chat.customer()
    session_id = chat.session_of(chat.pay_for(customer))
    assert chat.accept(winner_token, session_id).status_code == 200
    flipped = chat.app.simulate_patch(
        f"/api/shared/chat/sessions/{session_id}/topic",
        headers=bearer(winner_token),
        json={"topic_sensitivity": "sensitive", "confirmed": True},
    )
    assert flipped.status_code == 200, flipped.text

    def topic(token: str) -> str:
        items = chat.app.simulate_get(RECENT, headers=bearer(token)).json["data"]["items"]
        return str(next(i["topic_sensitivity"] for i in items if i["session_id"] == session_id))

    assert (topic(winner_token), topic(loser_token)) == ("sensitive", "normal")
