"""The per-process profile cache (lib/customers.Profiles): served from memory, dropped on every
change to the row whoever makes it (the trigger's NOTIFY), never kept from a read that raced a
change, and off while its LISTEN connection is down."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from lib.customers import Profiles, profile
from lib.services import Services


def _wait(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def profiles(services: Services) -> Iterator[Profiles]:
    cache = Profiles(services.db)
    cache.start()
    _wait(lambda: cache.listening)
    yield cache
    cache.close()


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


def test_a_read_that_raced_a_change_is_not_kept(services: Services, anonymous) -> None:
    customer = _customer(anonymous)

    class Racing(Profiles):
        raced = False

        def _load(self, customer_id: str) -> dict[str, Any]:
            doc = profile(services.db, customer_id)  # read before the change...
            if not self.raced:
                self.raced = True
                before = self._generation
                services.db.execute("UPDATE customers SET display_name = 'Baru' WHERE id = %(id)s", {"id": customer_id})
                _wait(lambda: self._generation != before)  # ...and the change heard before it is stored
            return doc

    cache = Racing(services.db)
    try:
        cache.start()
        _wait(lambda: cache.listening)
        assert cache.get(customer)["display_name"] == "Ayu"  # the raced read answers its own request
        assert cache.get(customer)["display_name"] == "Baru"  # but was not kept
    finally:
        cache.close()


def test_without_its_listen_connection_nothing_is_kept(services: Services, profiles, anonymous) -> None:
    customer = _customer(anonymous)
    profiles.get(customer)
    with psycopg.connect(services.db.dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE %s",
            ("%-profile-changes",),
        )
    _wait(lambda: not profiles.listening)
    _set_name_behind_its_back(services, customer, "Terlihat")
    assert profiles.get(customer)["display_name"] == "Terlihat"  # cleared, and read through
    _wait(lambda: profiles.listening)  # it reconnects
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
