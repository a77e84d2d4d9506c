"""Messages over REST: send (idempotent), list with after and cursor, receipts, unread counts,
only participants."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from lib.chat.messages import Outgoing, Quota, mark, send_many
from lib.errors import ApiError, RateLimited
from lib.principal import Principal
from tests.chatflow import Chat
from tests.conftest import bearer


def _send(chat: Chat, token: str, session_id: str, content: str, client_id: str | None = None):
    return chat.app.simulate_post(
        f"/api/shared/chat/{session_id}/messages",
        headers=bearer(token),
        json={"client_message_id": client_id or str(uuid.uuid4()), "content": content},
    )


def test_both_parties_exchange_messages_with_receipts_and_unread_counts(chat: Chat) -> None:
    customer, mitra, mitra_token, session_id = chat.paired()
    me = customer["access_token"]
    hello = _send(chat, me, session_id, "Halo, aku mau cerita")
    assert hello.status_code == 201, hello.text
    doc = hello.json["data"]
    assert doc["sender_type"] == "customer"
    assert doc["status"] == "sent"
    assert doc["session_id"] == session_id
    heard = chat.heard.last("mitra", mitra["id"], "message.new")
    assert heard["data"]["id"] == doc["id"]
    assert heard["data"]["content"] == "Halo, aku mau cerita"
    _send(chat, me, session_id, "Boleh?")
    reply = _send(chat, mitra_token, session_id, "Boleh banget").json["data"]
    assert chat.heard.last("customer", customer["user"]["id"], "message.new")["data"]["id"] == reply["id"]

    views = chat.app.simulate_get("/api/mitra/sessions/active", headers=bearer(mitra_token)).json["data"]["items"]
    assert views[0]["unread_count"] == 2
    listed = chat.app.simulate_get(f"/api/shared/chat/{session_id}/messages", headers=bearer(mitra_token)).json["data"]
    assert [m["content"] for m in listed["items"]] == ["Halo, aku mau cerita", "Boleh?", "Boleh banget"]
    read = chat.app.simulate_post(
        f"/api/shared/chat/{session_id}/read",
        headers=bearer(mitra_token),
        json={"up_to_message_id": listed["items"][1]["id"]},
    )
    assert read.status_code == 204
    receipt = chat.heard.last("customer", customer["user"]["id"], "message.status")["data"]
    assert receipt == {"message_id": listed["items"][1]["id"], "status": "read"}
    views = chat.app.simulate_get("/api/mitra/sessions/active", headers=bearer(mitra_token)).json["data"]["items"]
    assert views[0]["unread_count"] == 0
    active = chat.app.simulate_get("/api/client/chat/active", headers=bearer(me)).json["data"]
    assert active["session"]["unread_count"] == 1  # the mitra's reply
    statuses = chat.pay.db.fetch_all("SELECT status FROM chat_messages WHERE sender_type = 'customer'")
    assert {r["status"] for r in statuses} == {"read"}


def test_after_and_cursor_pages(chat: Chat) -> None:
    customer, _, _, session_id = chat.paired()
    me = customer["access_token"]
    sent = [_send(chat, me, session_id, f"pesan {i}").json["data"]["id"] for i in range(5)]
    url = f"/api/shared/chat/{session_id}/messages"
    after = chat.app.simulate_get(url, headers=bearer(me), params={"after": sent[1]}).json["data"]
    assert [m["id"] for m in after["items"]] == sent[2:]
    first = chat.app.simulate_get(url, headers=bearer(me), params={"limit": 2}).json["data"]
    assert [m["id"] for m in first["items"]] == sent[:2]
    assert first["has_more"]
    second = chat.app.simulate_get(url, headers=bearer(me), params={"limit": 2, "cursor": first["next_cursor"]}).json
    assert [m["id"] for m in second["data"]["items"]] == sent[2:4]
    foreign = chat.app.simulate_get(url, headers=bearer(me), params={"after": str(uuid.uuid4())})
    assert foreign.status_code == 422


def test_twenty_concurrent_sends_of_one_client_message_id_store_one_message(chat: Chat) -> None:
    customer, mitra, _, session_id = chat.paired()
    client_id = str(uuid.uuid4())
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(
            pool.map(lambda _: _send(chat, customer["access_token"], session_id, "sekali", client_id), range(20))
        )
    assert {r.status_code for r in results} == {201}
    assert len({r.json["data"]["id"] for r in results}) == 1
    assert chat.pay.db.fetch_one("SELECT count(*) AS n FROM chat_messages") == {"n": 1}
    chat.heard.of("mitra", mitra["id"], wait_for="message.new")
    time.sleep(0.3)  # what was published has arrived
    told = [d["id"] for d in chat.heard.data("mitra", mitra["id"], "message.new")]
    # The repeats that found it stored are told again (the mitra has not said it has it): one
    # message, one bubble, however many frames.
    assert 1 <= len(told) <= 20  # one when the others came before it was stored, up to one per send
    assert set(told) == {results[0].json["data"]["id"]}


def test_only_participants_and_only_while_active(chat: Chat) -> None:
    customer, _, mitra_token, session_id = chat.paired()
    stranger = chat.customer("Orang lain")
    _, other_mitra = chat.mitra("Lain")
    for token in (stranger["access_token"], other_mitra):
        assert _send(chat, token, session_id, "hai").status_code == 404
        assert (
            chat.app.simulate_get(f"/api/shared/chat/{session_id}/messages", headers=bearer(token)).status_code == 404
        )
        assert chat.app.simulate_get(f"/api/shared/chat/{session_id}/info", headers=bearer(token)).status_code == 404
    too_long = _send(chat, customer["access_token"], session_id, "x" * 4001)
    assert too_long.status_code == 422
    blank = _send(chat, customer["access_token"], session_id, "   ")
    assert blank.status_code == 422
    assert _send(chat, customer["access_token"], session_id, "x" * 4000).status_code == 201
    chat.app.simulate_post(f"/api/client/chat/{session_id}/end", headers=bearer(customer["access_token"]))
    closed = _send(chat, mitra_token, session_id, "masih di sini?")
    assert closed.status_code == 409
    assert closed.json["error"]["code"] == "SESSION_NOT_ACTIVE"


def test_a_batch_of_sends_gives_each_its_own_outcome(chat: Chat) -> None:
    """What the gateway hands lib when frames arrive together: one item's refusal leaves the
    others stored, a repeat (earlier, or twice in the batch) answers with the first message, each
    stored message is heard once, and a repeat of one the other party does not have yet once more."""
    customer, mitra, _, session_id = chat.paired()
    other, _, _, paused_id = chat.paired()
    stranger = chat.customer("Orang lain")
    chat.pay.db.execute("UPDATE chat_sessions SET status = 'extending' WHERE id = %(s)s", {"s": paused_id})
    earlier = _send(chat, customer["access_token"], session_id, "dulu", "earlier").json["data"]

    def who(user_type: str, user_id: object) -> Principal:
        return Principal(user_type=user_type, user_id=str(user_id), session_id="s")

    me, bestie = who("customer", customer["user"]["id"]), who("mitra", mitra["id"])
    items = [
        Outgoing(me, session_id, "x1", "satu"),
        Outgoing(bestie, session_id.upper(), "x2", "dua"),
        Outgoing(me, session_id, "earlier", "dulu lagi"),
        Outgoing(who("customer", stranger["user"]["id"]), session_id, "x3", "menyusup"),
        Outgoing(who("customer", other["user"]["id"]), paused_id, "x4", "tunggu"),
        Outgoing(me, session_id, "x1", "satu"),
        Outgoing(me, session_id, "x5", "   "),
    ]
    s = chat.pay
    out = send_many(s.db, s.chat_events, s.transcripts, items)

    stored = [o for o in out if isinstance(o, tuple)]
    assert [o[1] for o in stored] == [True, True, False, False]
    one, two, repeat, twice = (o[0] for o in stored)
    assert (one["content"], one["sender_type"], two["content"], two["sender_type"]) == (
        "satu",
        "customer",
        "dua",
        "mitra",
    )
    assert str(repeat["id"]) == earlier["id"]
    assert repeat["content"] == "dulu"
    assert twice["id"] == one["id"]
    codes = [o.code if isinstance(o, ApiError) else "ok" for o in out]
    assert codes == ["ok", "ok", "ok", "NOT_FOUND", "SESSION_PAUSED", "ok", "VALIDATION_ERROR"]
    rows = s.db.fetch_all("SELECT client_message_id FROM chat_messages ORDER BY seq")
    assert [r["client_message_id"] for r in rows] == ["earlier", "x1", "x2"]
    deadline = time.monotonic() + 3
    while chat.heard.of("mitra", mitra["id"]).count("message.new") < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # a duplicate would arrive right behind
    # "dulu" over REST, then in the batch "satu" once and "dulu" again (not yet delivered)
    assert chat.heard.of("mitra", mitra["id"]).count("message.new") == 3
    assert chat.heard.last("customer", customer["user"]["id"], "message.new")["data"]["id"] == str(two["id"])


def test_a_repeat_costs_the_sender_a_message_only_when_it_is_told_again(chat: Chat) -> None:
    """An app re-sending after a reconnect (the same client_message_id) is answered the stored
    message. A repeat of one the other party's app has does not use up its MESSAGES_PER_MINUTE;
    one that is told again does, so repeats cannot flood the other party."""
    customer, _, _, session_id = chat.paired()
    s = chat.pay
    who = Principal("customer", customer["user"]["id"], "x")
    if time.time() % 60 > 50:  # one minute's window for the whole test
        time.sleep(60.5 - time.time() % 60)
    quota = Quota(s.valkey, 3)

    def one(client_id: str) -> object:
        (outcome,) = send_many(
            s.db, s.chat_events, s.transcripts, [Outgoing(who, session_id, client_id, "halo")], quota=quota
        )
        return outcome if isinstance(outcome, ApiError) else outcome[1]

    assert one("a") is True
    s.db.execute("UPDATE chat_messages SET status = 'delivered', delivered_at = now()")
    assert [one("a"), one("a"), one("b"), one("b")] == [False, False, True, False]  # "b" told again: 3 of 3
    assert isinstance(one("c"), RateLimited)


def test_a_retry_is_told_again_until_the_other_party_has_it(chat: Chat) -> None:
    """A sender retries when it heard no answer, and the process that stored its message may have
    died between commit and publish: a retry can come at once (the connection reset), so a repeat
    of a message the other party's app has not acknowledged (`delivered`) is published again (the
    apps keep one bubble per message id), however soon; a cumulative `read` up to a later message
    is no acknowledgement of this one; once `delivered`, a repeat is answered silently."""
    customer, mitra, mitra_token, session_id = chat.paired()
    me = customer["access_token"]

    def heard() -> int:
        time.sleep(0.3)  # what was published has arrived
        return chat.heard.of("mitra", mitra["id"]).count("message.new")

    first = _send(chat, me, session_id, "halo", "sekali")
    assert first.status_code == 201
    assert heard() == 1
    again = _send(chat, me, session_id, "halo", "sekali")  # at once
    assert again.status_code == 201
    assert again.json["data"]["id"] == first.json["data"]["id"]
    assert heard() == 2
    # The mitra read up to a later message (heard live) without having this one.
    later = _send(chat, me, session_id, "lagi", "kedua").json["data"]
    assert heard() == 3
    read = chat.app.simulate_post(
        f"/api/shared/chat/{session_id}/read",
        json={"up_to_message_id": later["id"]},
        headers=bearer(mitra_token),
    )
    assert read.status_code == 204
    assert _send(chat, me, session_id, "halo", "sekali").status_code == 201
    assert heard() == 4
    assert _send(chat, me, session_id, "lagi", "kedua").status_code == 201  # the one named was on screen
    assert heard() == 4
    # The mitra's app now has it, and says so: it stays `read`, the customer's tick does not go back.
    s, bestie = chat.pay, Principal("mitra", str(mitra["id"]), "x")
    assert mark(s.db, s.chat_events, bestie, session_id, first.json["data"]["id"], "delivered") == []
    row = s.db.fetch_one("SELECT status, delivered_at FROM chat_messages WHERE client_message_id = 'sekali'")
    assert row is not None
    assert (row["status"], row["delivered_at"] is not None) == ("read", True)
    assert _send(chat, me, session_id, "halo", "sekali").status_code == 201
    assert heard() == 4
    assert "delivered" not in [
        d["status"] for d in chat.heard.data("customer", customer["user"]["id"], "message.status")
    ]
    # After the chat is over, nothing is told again.
    unseen = _send(chat, me, session_id, "terakhir", "ketiga").json["data"]
    assert heard() == 5
    s.db.execute("UPDATE chat_sessions SET status = 'completed' WHERE id = %(s)s", {"s": session_id})
    assert _send(chat, me, session_id, "terakhir", "ketiga").json["data"]["id"] == unseen["id"]
    assert heard() == 5
