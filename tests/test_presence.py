"""Mitra presence: online/offline, heartbeats on Valkey, the stale sweep, capacity, availability,
the mirror and its PostgreSQL fallbacks."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
from falcon import testing

from lib.config.app import set_values
from lib.config.env import Settings
from lib.presence.availability import AvailabilityCache, availability, find_available_mitras
from lib.presence.keys import DEACTIVATED, ONLINE, SNAPSHOT, capacity_key, heartbeat_key
from lib.presence.mirror import flush_heartbeats, heal, reseed
from lib.presence.state import recompute_capacity, sweep_stale
from lib.services import Services
from runtime.app import create_app
from runtime.container import build_services
from tests.conftest import bearer

STATUS = "/api/mitra/status"


def _online(public: testing.TestClient, token: str) -> dict[str, Any]:
    result = public.simulate_post(f"{STATUS}/online", headers=bearer(token))
    assert result.status_code == 200, result.text
    data: dict[str, Any] = result.json["data"]
    return data


def _logs(services: Services, mitra_id: Any) -> list[tuple[bool, str]]:
    rows = services.db.fetch_all(
        "SELECT is_online, reason FROM mitra_online_logs WHERE mitra_id = %(m)s ORDER BY id", {"m": mitra_id}
    )
    return [(r["is_online"], r["reason"]) for r in rows]


def _sessions(services: Services, mitra_id: Any, n: int, status: str = "active") -> None:
    customer = services.db.fetch_one("INSERT INTO customers DEFAULT VALUES RETURNING id")
    assert customer is not None
    for _ in range(n):
        services.db.execute(
            "INSERT INTO chat_sessions (customer_id, mitra_id, status) VALUES (%(c)s, %(m)s, %(s)s)",
            {"c": customer["id"], "m": mitra_id, "s": status},
        )


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
    assert _online(public, token)["is_online"] is True
    _online(public, token)  # no change, no second log row
    assert public.simulate_post(f"{STATUS}/offline", headers=bearer(token)).json["data"]["is_online"] is False
    assert _logs(services, mitra["id"]) == [(True, "manual"), (False, "manual")]
    assert services.valkey.sismember(ONLINE, str(mitra["id"])) == 0
    me = public.simulate_get("/api/mitra/me", headers=bearer(token)).json["data"]
    assert me["id"] == str(mitra["id"]) and me["is_online"] is False


def test_heartbeat_touches_only_valkey_then_flushes(
    public: testing.TestClient, services: Services, mitra_login
) -> None:
    mitra, token = mitra_login()
    _online(public, token)
    before = services.db.fetch_one(
        "SELECT last_heartbeat_at FROM mitra_online_status WHERE mitra_id = %(m)s", {"m": mitra["id"]}
    )
    time.sleep(0.05)
    assert public.simulate_post(f"{STATUS}/heartbeat", headers=bearer(token)).status_code == 204
    after = services.db.fetch_one(
        "SELECT last_heartbeat_at FROM mitra_online_status WHERE mitra_id = %(m)s", {"m": mitra["id"]}
    )
    assert after == before  # no PostgreSQL write on the hot path
    beat = float(services.valkey.get(heartbeat_key(str(mitra["id"]))) or 0)
    assert abs(beat - time.time()) < 5
    assert flush_heartbeats(services.db, services.valkey) == 1
    flushed = services.db.fetch_one(
        "SELECT last_heartbeat_at FROM mitra_online_status WHERE mitra_id = %(m)s", {"m": mitra["id"]}
    )
    assert flushed is not None and before is not None and flushed["last_heartbeat_at"] > before["last_heartbeat_at"]


def test_deactivated_set_refuses_heartbeats(public: testing.TestClient, services: Services, mitra_login) -> None:
    mitra, token = mitra_login()
    services.valkey.sadd(DEACTIVATED, str(mitra["id"]))  # the instant before revocation reaches us
    result = public.simulate_post(f"{STATUS}/heartbeat", headers=bearer(token))
    assert result.status_code == 403 and result.json["error"]["code"] == "ACCOUNT_INACTIVE"


def test_stale_sweep(public: testing.TestClient, services: Services, mitra_login) -> None:
    stale, stale_token = mitra_login(name="stale")
    fresh, fresh_token = mitra_login(name="fresh")
    _online(public, stale_token)
    _online(public, fresh_token)
    services.db.execute("UPDATE mitra_online_status SET last_heartbeat_at = now() - interval '60 seconds'")
    services.valkey.set(heartbeat_key(str(stale["id"])), time.time() - 60)
    # The fresh one's PostgreSQL copy is old too, but its Valkey heartbeat is new: the sweep flushes first.
    public.simulate_post(f"{STATUS}/heartbeat", headers=bearer(fresh_token))
    assert sweep_stale(services.db, services.valkey, services.config) == [str(stale["id"])]
    assert _logs(services, stale["id"]) == [(True, "manual"), (False, "stale_sweep")]
    assert services.valkey.smembers(ONLINE) == {str(fresh["id"])}
    set_values(services.db, None, {"require_ping": False}, None)
    services.config.invalidate()
    services.db.execute("UPDATE mitra_online_status SET last_heartbeat_at = now() - interval '1 hour'")
    assert sweep_stale(services.db, services.valkey, services.config) == []  # heartbeats not enforced


def test_capacity_counts_live_sessions(public: testing.TestClient, services: Services, mitra_login) -> None:
    mitra, token = mitra_login()
    _online(public, token)
    _sessions(services, mitra["id"], 2, "active")
    _sessions(services, mitra["id"], 1, "completed")
    assert recompute_capacity(services.db, services.valkey, str(mitra["id"])) == 2
    status = public.simulate_get(STATUS, headers=bearer(token)).json["data"]
    assert (status["active_session_count"], status["available_slots"]) == (2, 1)
    assert find_available_mitras(services.db, services.valkey, services.config) == [str(mitra["id"])]
    _sessions(services, mitra["id"], 1, "closing")
    recompute_capacity(services.db, services.valkey, str(mitra["id"]))
    assert find_available_mitras(services.db, services.valkey, services.config) == []
    assert availability(services.db, services.valkey, services.config, AvailabilityCache()) == {
        "available": False,
        "count": 0,
    }


def test_availability_endpoint_and_snapshot(
    public: testing.TestClient, services: Services, mitra_login, anonymous
) -> None:
    customer = anonymous()["access_token"]
    result = public.simulate_get("/api/client/mitra-availability", headers=bearer(customer))
    assert result.status_code == 200 and result.json["data"] == {"available": False, "count": 0}
    _, token = mitra_login()
    _online(public, token)
    assert services.valkey.get(SNAPSHOT) is None  # a change drops the shared snapshot
    assert availability(services.db, services.valkey, services.config, AvailabilityCache()) == {
        "available": True,
        "count": 1,
    }
    assert services.valkey.ttl(SNAPSHOT) <= 10
    _, mitra_token = mitra_login()
    assert public.simulate_get("/api/client/mitra-availability", headers=bearer(mitra_token)).status_code == 403


def test_find_available_mitras_rules(public: testing.TestClient, services: Services, mitra_login) -> None:
    ok, ok_token = mitra_login(name="ok")
    stale, stale_token = mitra_login(name="stale")
    gone, gone_token = mitra_login(name="inactive")
    for token in (ok_token, stale_token, gone_token):
        _online(public, token)
    services.db.execute(
        "UPDATE mitra_online_status SET last_heartbeat_at = now() - interval '2 minutes' WHERE mitra_id = %(m)s",
        {"m": stale["id"]},
    )
    services.valkey.delete(heartbeat_key(str(stale["id"])))
    services.db.execute("UPDATE mitras SET is_active = false WHERE id = %(m)s", {"m": gone["id"]})
    assert find_available_mitras(services.db, services.valkey, services.config) == [str(ok["id"])]


def test_deactivation_end_to_end(
    public: testing.TestClient, internal, services: Services, mitra_login, cc_login
) -> None:
    mitra, token = mitra_login()
    _online(public, token)
    _, admin, _ = cc_login("operator")  # operators hold mitras.manage
    result = internal.simulate_patch(
        f"/internal/mitras/{mitra['id']}/status", headers=bearer(admin), json={"is_active": False}
    )
    assert result.status_code == 200 and result.json["data"]["is_active"] is False
    assert result.json["data"]["is_online"] is False
    assert _logs(services, mitra["id"])[-1] == (False, "deactivation")
    beat = public.simulate_post(f"{STATUS}/heartbeat", headers=bearer(token))
    assert beat.status_code == 401  # its sessions are revoked
    assert services.valkey.sismember(DEACTIVATED, str(mitra["id"])) == 1
    assert find_available_mitras(services.db, services.valkey, services.config) == []
    again = internal.simulate_patch(
        f"/internal/mitras/{mitra['id']}/status", headers=bearer(admin), json={"is_active": True}
    )
    assert again.json["data"]["is_active"] is True
    assert services.valkey.sismember(DEACTIVATED, str(mitra["id"])) == 0


def test_inactive_mitra_cannot_go_online(public: testing.TestClient, services: Services, mitra_login) -> None:
    mitra, token = mitra_login()
    services.db.execute("UPDATE mitras SET is_active = false WHERE id = %(m)s", {"m": mitra["id"]})
    result = public.simulate_post(f"{STATUS}/online", headers=bearer(token))
    assert result.status_code == 403 and result.json["error"]["code"] == "ACCOUNT_INACTIVE"


def test_reseed_rebuilds_the_mirror(public: testing.TestClient, services: Services, mitra_login) -> None:
    online, token = mitra_login()
    inactive, _ = mitra_login(active=False)
    _online(public, token)
    _sessions(services, online["id"], 1)
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
    _online(public, token)
    assert heal(services.db, services.valkey, full_every=60) is True  # first run: nothing seeded yet
    assert heal(services.db, services.valkey, full_every=60) is False  # seeded recently: one GET, nothing else
    services.valkey.flushdb()  # what a Valkey restart looks like from here
    assert heal(services.db, services.valkey, full_every=60) is True
    assert services.valkey.smembers(ONLINE) == {str(mitra["id"])}


def test_everything_keeps_working_with_valkey_stopped(
    settings: Settings, throwaway_valkey, mitra_login, anonymous
) -> None:
    svc = build_services(replace(settings, redis_url=throwaway_valkey.url))
    try:
        client = testing.TestClient(create_app("public", svc))
        mitra, token = mitra_login()
        customer = anonymous()["access_token"]
        assert client.simulate_post(f"{STATUS}/online", headers=bearer(token)).status_code == 200
        assert client.simulate_post(f"{STATUS}/heartbeat", headers=bearer(token)).status_code == 204
        throwaway_valkey.stop()
        started = time.monotonic()
        assert client.simulate_post(f"{STATUS}/heartbeat", headers=bearer(token)).status_code == 204
        assert time.monotonic() - started < 2  # every Valkey call gives up within its timeout
        row = svc.db.fetch_one(
            "SELECT last_heartbeat_at > now() - interval '5 seconds' AS fresh "
            "FROM mitra_online_status WHERE mitra_id = %(m)s",
            {"m": mitra["id"]},
        )
        assert row == {"fresh": True}  # the fallback wrote PostgreSQL
        time.sleep(1.1)  # past the per-process availability cache
        avail = client.simulate_get("/api/client/mitra-availability", headers=bearer(customer))
        assert avail.status_code == 200 and avail.json["data"] == {"available": True, "count": 1}
        assert find_available_mitras(svc.db, svc.valkey, svc.config) == [str(mitra["id"])]
        assert client.simulate_post(f"{STATUS}/offline", headers=bearer(token)).status_code == 200
        svc.db.execute("UPDATE mitras SET is_active = false WHERE id = %(m)s", {"m": mitra["id"]})
        beat = client.simulate_post(f"{STATUS}/heartbeat", headers=bearer(token))
        assert beat.status_code == 403  # the deactivated check fell back to PostgreSQL
    finally:
        svc.close()


@pytest.mark.parametrize("path", ["/api/mitra/status", "/api/mitra/me"])
def test_customer_token_is_refused_on_mitra_routes(public: testing.TestClient, anonymous, path: str) -> None:
    assert public.simulate_get(path, headers=bearer(anonymous()["access_token"])).status_code == 403
