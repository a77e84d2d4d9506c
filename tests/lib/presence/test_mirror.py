"""The Valkey presence mirror: reseed and heal."""

from __future__ import annotations

from falcon import testing

from lib.presence.keys import DEACTIVATED, ONLINE, capacity_key, heartbeat_key
from lib.presence.mirror import heal, reseed
from lib.services import Services
from tests.helpers import add_sessions, go_online


def test_reseed_rebuilds_the_mirror(public: testing.TestClient, services: Services, mitra_login) -> None:
    online, token = mitra_login()
    inactive, _ = mitra_login(active=False)
    go_online(public, token)
    add_sessions(services, online["id"], 1)
    services.valkey.flushdb()  # Valkey restarted empty
    reseed(services.db, services.valkey)
    assert services.valkey.smembers(ONLINE) == {str(online["id"])}
    assert services.valkey.smembers(DEACTIVATED) == {str(inactive["id"])}
    assert services.valkey.get(capacity_key(str(online["id"]))) == "1"
    assert services.valkey.get(heartbeat_key(str(online["id"]))) is not None
    services.valkey.sadd(ONLINE, "00000000-0000-4000-8000-000000000000")  # drift
    reseed(services.db, services.valkey)
    assert services.valkey.smembers(ONLINE) == {str(online["id"])}


def test_heal_rebuilds_after_valkey_loses_its_data(public: testing.TestClient, services: Services, mitra_login) -> None:
    mitra, token = mitra_login()
    go_online(public, token)
    assert heal(services.db, services.valkey, full_every=60) is True  # first run: nothing seeded yet
    assert heal(services.db, services.valkey, full_every=60) is False  # seeded recently: one GET, nothing else
    services.valkey.flushdb()  # what a Valkey restart looks like from here
    assert heal(services.db, services.valkey, full_every=60) is True
    assert services.valkey.smembers(ONLINE) == {str(mitra["id"])}
