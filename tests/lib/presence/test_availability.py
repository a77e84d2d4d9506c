"""Availability for the home screen and for pairing, and its PostgreSQL fallbacks with Valkey stopped."""

from __future__ import annotations

import time
from dataclasses import replace

from falcon import testing

from lib.config.env import Settings
from lib.presence.availability import AvailabilityCache, availability, find_available_mitras
from lib.presence.keys import SNAPSHOT, heartbeat_key
from lib.services import Services
from runtime.app import create_app
from runtime.container import build_services
from tests.conftest import bearer
from tests.helpers import MITRA_STATUS as STATUS
from tests.helpers import go_online


def test_availability_endpoint_and_snapshot(
    public: testing.TestClient, services: Services, mitra_login, anonymous
) -> None:
    customer = anonymous()["access_token"]
    result = public.simulate_get("/api/client/mitra-availability", headers=bearer(customer))
    assert result.status_code == 200
    assert result.json["data"] == {"available": False, "count": 0}
    _, token = mitra_login()
    go_online(public, token)
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
        go_online(public, token)
    services.db.execute(
        "UPDATE mitra_online_status SET last_heartbeat_at = now() - interval '2 minutes' WHERE mitra_id = %(m)s",
        {"m": stale["id"]},
    )
    services.valkey.delete(heartbeat_key(str(stale["id"])))
    services.db.execute("UPDATE mitras SET is_active = false WHERE id = %(m)s", {"m": gone["id"]})
    assert find_available_mitras(services.db, services.valkey, services.config) == [str(ok["id"])]


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
        svc.heartbeats.flush()  # what the flush thread does every 0.5 s
        assert time.monotonic() - started < 2  # every Valkey call gives up within its timeout
        row = svc.db.fetch_one(
            "SELECT last_heartbeat_at > now() - interval '5 seconds' AS fresh "
            "FROM mitra_online_status WHERE mitra_id = %(m)s",
            {"m": mitra["id"]},
        )
        assert row == {"fresh": True}  # the fallback wrote PostgreSQL
        time.sleep(1.1)  # past the per-process availability cache
        avail = client.simulate_get("/api/client/mitra-availability", headers=bearer(customer))
        assert avail.status_code == 200
        assert avail.json["data"] == {"available": True, "count": 1}
        assert find_available_mitras(svc.db, svc.valkey, svc.config) == [str(mitra["id"])]
        assert client.simulate_post(f"{STATUS}/offline", headers=bearer(token)).status_code == 200
        svc.db.execute("UPDATE mitras SET is_active = false WHERE id = %(m)s", {"m": mitra["id"]})
        svc.heartbeats.flush()
        beat = client.simulate_post(f"{STATUS}/heartbeat", headers=bearer(token))
        assert beat.status_code == 403  # the deactivated check fell back to PostgreSQL
    finally:
        svc.close()
