"""Mitra presence: online/offline with logs, heartbeats on Valkey, the stale sweep, capacity."""

from __future__ import annotations

import time

import pytest
from falcon import testing

from lib.config.app import set_values
from lib.presence.availability import AvailabilityCache, availability, find_available_mitras
from lib.presence.keys import DEACTIVATED, ONLINE, heartbeat_key
from lib.presence.mirror import flush_heartbeats
from lib.presence.state import recompute_capacity, sweep_stale
from lib.services import Services
from tests.conftest import bearer
from tests.helpers import MITRA_STATUS as STATUS
from tests.helpers import add_sessions, go_online, online_logs


def test_status_and_toggles_are_logged(public: testing.TestClient, services: Services, mitra_login) -> None:
    mitra, token = mitra_login()
    status = public.simulate_get(STATUS, headers=bearer(token)).json["data"]
    assert status == {
        "is_online": False,
        "active_session_count": 0,
        "capacity": 3,
        "available_slots": 3,
        "heartbeat_cadence_seconds": 30,
        "stale_after_seconds": 45,
    }
    assert go_online(public, token)["is_online"] is True
    go_online(public, token)  # no change, no second log row
    assert public.simulate_post(f"{STATUS}/offline", headers=bearer(token)).json["data"]["is_online"] is False
    assert online_logs(services, mitra["id"]) == [(True, "manual"), (False, "manual")]
    assert services.valkey.sismember(ONLINE, str(mitra["id"])) == 0
    me = public.simulate_get("/api/mitra/me", headers=bearer(token)).json["data"]
    assert me["id"] == str(mitra["id"])
    assert me["is_online"] is False


def test_heartbeat_touches_only_valkey_then_flushes(
    public: testing.TestClient, services: Services, mitra_login
) -> None:
    mitra, token = mitra_login()
    go_online(public, token)
    before = services.db.fetch_one(
        "SELECT last_heartbeat_at FROM mitra_online_status WHERE mitra_id = %(m)s", {"m": mitra["id"]}
    )
    time.sleep(0.05)
    assert public.simulate_post(f"{STATUS}/heartbeat", headers=bearer(token)).status_code == 204
    after = services.db.fetch_one(
        "SELECT last_heartbeat_at FROM mitra_online_status WHERE mitra_id = %(m)s", {"m": mitra["id"]}
    )
    assert after == before  # no PostgreSQL write on the hot path
    services.heartbeats.flush()  # what the process's flush thread does every 0.5 s
    beat = float(services.valkey.get(heartbeat_key(str(mitra["id"]))) or 0)
    assert abs(beat - time.time()) < 5
    assert flush_heartbeats(services.db, services.valkey) == 1
    flushed = services.db.fetch_one(
        "SELECT last_heartbeat_at FROM mitra_online_status WHERE mitra_id = %(m)s", {"m": mitra["id"]}
    )
    assert flushed is not None
    assert before is not None
    assert flushed["last_heartbeat_at"] > before["last_heartbeat_at"]


def test_deactivated_set_refuses_heartbeats(public: testing.TestClient, services: Services, mitra_login) -> None:
    mitra, token = mitra_login()
    assert public.simulate_post(f"{STATUS}/heartbeat", headers=bearer(token)).status_code == 204
    services.valkey.sadd(DEACTIVATED, str(mitra["id"]))  # the instant before revocation reaches us
    services.heartbeats.flush()  # what the process's flush thread does every 0.5 s
    result = public.simulate_post(f"{STATUS}/heartbeat", headers=bearer(token))
    assert result.status_code == 403
    assert result.json["error"]["code"] == "ACCOUNT_INACTIVE"


def test_stale_sweep(public: testing.TestClient, services: Services, mitra_login) -> None:
    stale, stale_token = mitra_login(name="stale")
    fresh, fresh_token = mitra_login(name="fresh")
    go_online(public, stale_token)
    go_online(public, fresh_token)
    services.db.execute("UPDATE mitra_online_status SET last_heartbeat_at = now() - interval '60 seconds'")
    services.valkey.set(heartbeat_key(str(stale["id"])), time.time() - 60)
    # The fresh one's PostgreSQL copy is old too, but its Valkey heartbeat is new: the sweep flushes first.
    public.simulate_post(f"{STATUS}/heartbeat", headers=bearer(fresh_token))
    services.heartbeats.flush()
    assert sweep_stale(services.db, services.valkey, services.config) == [str(stale["id"])]
    assert online_logs(services, stale["id"]) == [(True, "manual"), (False, "stale_sweep")]
    assert services.valkey.smembers(ONLINE) == {str(fresh["id"])}
    set_values(services.db, None, {"require_ping": False}, None)
    services.config.invalidate()
    services.db.execute("UPDATE mitra_online_status SET last_heartbeat_at = now() - interval '1 hour'")
    assert sweep_stale(services.db, services.valkey, services.config) == []  # heartbeats not enforced


def test_capacity_counts_live_sessions(public: testing.TestClient, services: Services, mitra_login) -> None:
    mitra, token = mitra_login()
    go_online(public, token)
    add_sessions(services, mitra["id"], 2, "active")
    add_sessions(services, mitra["id"], 1, "completed")
    assert recompute_capacity(services.db, services.valkey, str(mitra["id"])) == 2
    status = public.simulate_get(STATUS, headers=bearer(token)).json["data"]
    assert (status["active_session_count"], status["available_slots"]) == (2, 1)
    assert find_available_mitras(services.db, services.valkey, services.config) == [str(mitra["id"])]
    add_sessions(services, mitra["id"], 1, "closing")
    recompute_capacity(services.db, services.valkey, str(mitra["id"]))
    assert find_available_mitras(services.db, services.valkey, services.config) == []
    assert availability(services.db, services.valkey, services.config, AvailabilityCache()) == {
        "available": False,
        "count": 0,
    }


def test_inactive_mitra_cannot_go_online(public: testing.TestClient, services: Services, mitra_login) -> None:
    mitra, token = mitra_login()
    services.db.execute("UPDATE mitras SET is_active = false WHERE id = %(m)s", {"m": mitra["id"]})
    result = public.simulate_post(f"{STATUS}/online", headers=bearer(token))
    assert result.status_code == 403
    assert result.json["error"]["code"] == "ACCOUNT_INACTIVE"


@pytest.mark.parametrize("path", ["/api/mitra/status", "/api/mitra/me"])
def test_customer_token_is_refused_on_mitra_routes(public: testing.TestClient, anonymous, path: str) -> None:
    assert public.simulate_get(path, headers=bearer(anonymous()["access_token"])).status_code == 403
