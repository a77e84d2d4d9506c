"""Reads kept in memory (lib/kept.py): the profile behind GET /me and an idle customer's
chat/active, served from memory, dropped on every change to the row whoever makes it (the
triggers' NOTIFY), never kept from a read that raced a change, off while the LISTEN connection is
down, and seen at once by the process that made the change."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from lib.customers import CHANGES, kept_profiles, profile
from lib.kept import Changes, Kept
from lib.services import Services
from tests.chatflow import Chat
from tests.conftest import bearer
from tests.payflow import create_payment, paid_body, send_callback, tier_of


def _wait(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def changes(services: Services) -> Iterator[Changes]:
    made = Changes(services.db)
    yield made
    made.close()


@pytest.fixture
def profiles(services: Services, changes: Changes) -> Kept[dict[str, Any]]:
    cache = kept_profiles(changes, services.db)
    changes.start()
    _wait(lambda: changes.listening)
    return cache


def _customer(anonymous) -> str:
    return str(anonymous("Ayu")["user"]["id"])


def _set_name_behind_its_back(services: Services, customer_id: str, name: str) -> None:
    """A change that fires no trigger (replica mode), so only a cache miss can see it."""
    with psycopg.connect(services.db.dsn, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE customers SET display_name = %s WHERE id = %s", (name, customer_id))


def test_a_profile_is_served_from_memory_until_the_row_changes(services: Services, profiles, anonymous) -> None:
    customer = _customer(anonymous)
    assert profiles.get(customer)["display_name"] == "Ayu"  # kept now
    _set_name_behind_its_back(services, customer, "Tanpa pemicu")
    assert profiles.get(customer)["display_name"] == "Ayu"  # from memory: the database was not asked
    services.db.execute("UPDATE customers SET display_name = 'Bunga' WHERE id = %(id)s", {"id": customer})
    _wait(lambda: profiles.get(customer)["display_name"] == "Bunga", timeout=2.0)  # any writer, via NOTIFY


def test_a_read_that_raced_a_change_is_not_kept(services: Services, changes: Changes, anonymous) -> None:
    customer = _customer(anonymous)
    raced = False

    def load(customer_id: str) -> dict[str, Any]:
        nonlocal raced
        doc = profile(services.db, customer_id)  # read before the change...
        if not raced:
            raced = True
            before = cache._generation
            services.db.execute("UPDATE customers SET display_name = 'Baru' WHERE id = %(id)s", {"id": customer_id})
            _wait(lambda: cache._generation != before)  # ...and the change heard before it is stored
        return doc

    cache = Kept(changes, CHANGES, load)
    changes.start()
    _wait(lambda: changes.listening)
    assert cache.get(customer)["display_name"] == "Ayu"  # the raced read answers its own request
    assert cache.get(customer)["display_name"] == "Baru"  # but was not kept


def test_without_its_listen_connection_nothing_is_kept(
    services: Services, changes: Changes, profiles, anonymous
) -> None:
    customer = _customer(anonymous)
    profiles.get(customer)
    with psycopg.connect(services.db.dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE %s",
            ("%-changes",),
        )
    _wait(lambda: not changes.listening)
    _set_name_behind_its_back(services, customer, "Terlihat")
    assert profiles.get(customer)["display_name"] == "Terlihat"  # cleared, and read through
    _wait(lambda: changes.listening)  # it reconnects
    profiles.get(customer)
    _set_name_behind_its_back(services, customer, "Tersimpan")
    assert profiles.get(customer)["display_name"] == "Terlihat"  # kept again


def test_patch_me_is_seen_at_once_by_the_process_that_made_it(public, anonymous) -> None:
    pair = anonymous("Ayu")
    headers = {"Authorization": f"Bearer {pair['access_token']}"}
    assert public.simulate_get("/api/client/me", headers=headers).json["data"]["display_name"] == "Ayu"
    for name in ("Bunga", "Citra", "Dewi"):
        assert public.simulate_patch("/api/client/me", headers=headers, json={"display_name": name}).status_code == 200
        assert public.simulate_get("/api/client/me", headers=headers).json["data"]["display_name"] == name


def _read(chat: Chat, token: str, path: str) -> dict[str, Any]:
    result = chat.app.simulate_get(path, headers=bearer(token))
    assert result.status_code == 200, result.text
    data: dict[str, Any] = result.json["data"]
    return data


def _active(chat: Chat, token: str) -> dict[str, Any]:
    return _read(chat, token, "/api/client/chat/active")


def test_an_idle_customers_chat_active_is_kept_until_a_session_of_theirs_changes(chat: Chat) -> None:
    chat.pay.changes.start()
    _wait(lambda: chat.pay.changes.listening)
    mitra, _ = chat.mitra()
    customer = chat.customer()
    token = customer["access_token"]
    assert _active(chat, token) == {"pairing": None, "session": None}  # kept now
    with psycopg.connect(chat.pay.db.dsn, autocommit=True) as conn:  # a session no trigger tells of
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            "INSERT INTO chat_sessions (customer_id, mitra_id, status, duration_minutes, started_at, expires_at) "
            "VALUES (%s, %s, 'active', 15, now(), now() + interval '15 minutes')",
            (customer["user"]["id"], mitra["id"]),
        )
    assert _active(chat, token)["session"] is None  # from memory
    chat.pay.db.execute(  # any change to one of the customer's sessions, by anyone
        "UPDATE chat_sessions SET duration_minutes = 16 WHERE customer_id = %(c)s", {"c": customer["user"]["id"]}
    )
    _wait(lambda: _active(chat, token)["session"] is not None, timeout=2.0)
    # With a live session the answer carries an unread count: never kept.
    session_id = _active(chat, token)["session"]["id"]
    chat.pay.db.execute(
        "INSERT INTO chat_messages (session_id, sender_type, sender_id, client_message_id, content) "
        "VALUES (%(s)s, 'mitra', %(m)s, 'x', 'halo')",
        {"s": session_id, "m": mitra["id"]},
    )
    assert _active(chat, token)["session"]["unread_count"] == 1


def test_a_payment_confirmed_in_this_process_shows_its_search_at_once(chat: Chat) -> None:
    chat.pay.changes.start()
    _wait(lambda: chat.pay.changes.listening)
    chat.mitra()
    customer = chat.customer()
    assert _active(chat, customer["access_token"])["pairing"] is None  # kept
    chat.pay.db.execute("ALTER TABLE chat_sessions DISABLE TRIGGER chat_sessions_changed")  # only the hook is left
    chat.pay_for(customer)
    assert _active(chat, customer["access_token"])["pairing"]["status"] == "searching"


def _poll(chat: Chat, token: str, request_id: str) -> dict[str, Any]:
    return _read(chat, token, f"/api/client/payment-requests/{request_id}")


def test_a_polled_payment_request_is_kept_until_its_row_changes_and_only_its_owner_sees_it(chat: Chat) -> None:
    chat.pay.changes.start()
    _wait(lambda: chat.pay.changes.listening)
    chat.mitra()  # a request is only taken while someone could answer it
    customer, other = chat.customer(), chat.customer()
    created = create_payment(chat.app, customer, tier_of(chat.pay))
    assert created.status_code == 201, created.text
    request_id = created.json["data"]["id"]
    token = customer["access_token"]
    behind = iter(range(1, 1000))

    def served_from_memory() -> bool:
        """Poll (and keep), change the row where no trigger sees it, poll again: the old value means
        memory answered. (The creation's own invoice UPDATE may still be on its way and drop the
        first entry kept, hence the retries.)"""
        before = _poll(chat, token, request_id)["discount"]
        with psycopg.connect(chat.pay.db.dsn, autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")
            conn.execute("UPDATE payment_requests SET discount = %s WHERE id = %s", (next(behind), request_id))
        return bool(_poll(chat, token, request_id)["discount"] == before)

    _wait(served_from_memory)
    stranger = chat.app.simulate_get(
        f"/api/client/payment-requests/{request_id}", headers=bearer(other["access_token"])
    )
    assert stranger.status_code == 404
    assert stranger.json["error"]["code"] == "NOT_FOUND"  # kept, still not theirs
    chat.pay.db.execute("UPDATE payment_requests SET discount = 5000 WHERE id = %(id)s", {"id": request_id})  # anyone
    _wait(lambda: _poll(chat, token, request_id)["discount"] == 5000, timeout=2.0)


def test_a_payment_abandoned_or_paid_in_this_process_is_seen_by_its_next_poll_at_once(chat: Chat) -> None:
    chat.pay.changes.start()
    _wait(lambda: chat.pay.changes.listening)
    chat.mitra()
    customer = chat.customer()
    token = customer["access_token"]
    chat.pay.db.execute("ALTER TABLE payment_requests DISABLE TRIGGER payment_requests_changed")  # only the hooks
    created = create_payment(chat.app, customer, tier_of(chat.pay)).json["data"]
    assert _poll(chat, token, created["id"])["status"] == "pending"  # kept
    abandoned = chat.app.simulate_post(f"/api/client/payment-requests/{created['id']}/abandon", headers=bearer(token))
    assert abandoned.status_code == 200, abandoned.text
    assert _poll(chat, token, created["id"])["status"] == "abandoned"

    again = create_payment(chat.app, customer, tier_of(chat.pay)).json["data"]
    assert _poll(chat, token, again["id"])["session_id"] is None  # kept
    assert send_callback(chat.app, paid_body(again)).json.get("confirmed") is True  # the webhook, in this process
    paid = _poll(chat, token, again["id"])
    assert paid["status"] == "confirmed"
    assert paid["session_id"] is not None  # its search is open
