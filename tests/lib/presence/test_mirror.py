"""The Valkey presence mirror: reseed, heal, and the heartbeat flush, each item judged alone."""

from __future__ import annotations

import logging
import time

import pytest
from falcon import testing

from lib.presence.keys import DEACTIVATED, ONLINE, SEEDED, capacity_key, heartbeat_key
from lib.presence.mirror import flush_heartbeats, heal, reseed
from lib.presence.state import set_online
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


def _last_beat(services: Services, mitra_id: object) -> float | None:
    row = services.db.fetch_one(
        "SELECT extract(epoch FROM last_heartbeat_at)::float8 AS at FROM mitra_online_status WHERE mitra_id = %(m)s",
        {"m": mitra_id},
    )
    return None if row is None or row["at"] is None else float(row["at"])


def test_heartbeat_flush_copies_the_good_beats_and_skips_malformed_ones(services: Services, make_mitra, caplog) -> None:
    good = str(make_mitra("+6281200000011", "Good")["id"])
    garbled = str(make_mitra("+6281200000012", "Garbled")["id"])
    for mitra_id in (good, garbled):
        set_online(services.db, services.valkey, mitra_id, True)
    services.db.execute("UPDATE mitra_online_status SET last_heartbeat_at = now() - interval '1 hour'")
    before = _last_beat(services, garbled)
    at = time.time() - 1
    services.valkey.set(heartbeat_key(good), at)
    services.valkey.set(heartbeat_key(garbled), "not-a-time")  # a malformed value
    junk = {  # malformed ids, and times PostgreSQL cannot store or must not
        "not-a-uuid": "1700000000",
        "00000000-0000-4000-8000-00000000000a": "nan",
        "00000000-0000-4000-8000-00000000000b": "1e20",
        "00000000-0000-4000-8000-00000000000c": "inf",
    }
    for mitra_id, value in junk.items():
        services.valkey.sadd(ONLINE, mitra_id)
        services.valkey.set(heartbeat_key(mitra_id), value)
    with caplog.at_level(logging.WARNING, logger="lib.presence.beats"):
        assert flush_heartbeats(services.db, services.valkey) == 1
    assert _last_beat(services, good) == pytest.approx(at, abs=1e-3)
    assert _last_beat(services, garbled) == before
    assert "heartbeat flush: 5 malformed heartbeat(s) skipped" in caplog.text


@pytest.mark.parametrize("stamp", ["garbage", "nan", "a week ahead"])
def test_heal_rebuilds_when_its_stamp_is_malformed(
    public: testing.TestClient, services: Services, mitra_login, stamp: str
) -> None:
    mitra, token = mitra_login()
    go_online(public, token)
    services.valkey.delete(ONLINE)
    value = str(time.time() + 7 * 86400) if stamp == "a week ahead" else stamp
    services.valkey.set(SEEDED, value)  # before: float() raised, or a future stamp never came due
    assert heal(services.db, services.valkey, full_every=60) is True
    assert services.valkey.smembers(ONLINE) == {str(mitra["id"])}
    assert heal(services.db, services.valkey, full_every=60) is False  # a good stamp again
