"""force-mitra-online, force-mitra-offline and reset-all-mitras-online go through the real presence
path: PostgreSQL state and online log first, the Valkey mirror with it, so availability (which
reads Valkey, PostgreSQL as fallback) and the stale sweep see what the fixture did."""

from __future__ import annotations

import time

from falcon import testing

from lib.presence.availability import find_available_mitras
from lib.presence.keys import ONLINE, heartbeat_key
from lib.presence.state import set_online, sweep_stale
from lib.services import Services

ONLINE_PATH, OFFLINE_PATH = "/internal/_test/force-mitra-online", "/internal/_test/force-mitra-offline"
RESET_ALL = "/internal/_test/reset-all-mitras-online"


def _state(services: Services, mitra_id: object) -> dict[str, object]:
    row = services.db.fetch_one(
        "SELECT is_online, now() - last_heartbeat_at AS age FROM mitra_online_status WHERE mitra_id = %(m)s",
        {"m": mitra_id},
    )
    logs = services.db.fetch_all(
        "SELECT is_online, reason FROM mitra_online_logs WHERE mitra_id = %(m)s ORDER BY id", {"m": mitra_id}
    )
    return {
        "db_online": row["is_online"] if row else None,
        "valkey_online": bool(services.valkey.sismember(ONLINE, str(mitra_id))),
        "logs": [(entry["is_online"], entry["reason"]) for entry in logs],
        "age": row["age"] if row else None,
    }


def _available(services: Services) -> list[str]:
    return find_available_mitras(services.db, services.valkey, services.config)


def test_force_online_and_offline_by_phone_or_id(internal: testing.TestClient, services: Services, make_mitra) -> None:
    mitra = make_mitra("+6281299900001", "Bestie Uji")
    mitra_id = str(mitra["id"])
    on = internal.simulate_post(ONLINE_PATH, json={"phone": "081299900001"})  # the app's 08... form works too
    assert on.status_code == 200, on.text
    assert on.json["data"]["mitra_id"] == mitra_id
    assert on.json["data"]["changed"] is True
    assert on.json["data"]["is_online"] is True
    state = _state(services, mitra_id)
    assert state["db_online"] is True
    assert state["valkey_online"] is True
    assert state["logs"] == [(True, "manual")]
    assert float(services.valkey.get(heartbeat_key(mitra_id)) or 0) > time.time() - 5  # a fresh heartbeat
    assert _available(services) == [mitra_id]

    off = internal.simulate_post(OFFLINE_PATH, json={"mitra_id": mitra_id})
    assert off.status_code == 200, off.text
    assert off.json["data"]["changed"] is True
    assert off.json["data"]["is_online"] is False
    state = _state(services, mitra_id)
    assert state["db_online"] is False
    assert state["valkey_online"] is False
    assert state["logs"] == [(True, "manual"), (False, "manual")]
    assert _available(services) == []

    again = internal.simulate_post(OFFLINE_PATH, json={"mitra_id": mitra_id})
    assert again.status_code == 200
    assert again.json["data"]["changed"] is False  # idempotent, no new log row
    assert len(_state(services, mitra_id)["logs"]) == 2  # type: ignore[arg-type]


def test_force_online_refuses_what_the_app_would(internal: testing.TestClient, make_mitra) -> None:
    inactive = make_mitra("+6281299900002", "Bestie Nonaktif", active=False)
    refused = internal.simulate_post(ONLINE_PATH, json={"mitra_id": str(inactive["id"])})
    assert refused.status_code == 403
    assert refused.json["error"]["code"] == "ACCOUNT_INACTIVE"
    unknown = internal.simulate_post(ONLINE_PATH, json={"phone": "+6281299900099"})
    assert unknown.status_code == 404
    assert unknown.json["error"]["code"] == "MITRA_NOT_FOUND"
    for body in ({}, {"mitra_id": str(inactive["id"]), "phone": "+6281299900002"}, {"phone": "12345"}, {"x": 1}):
        bad = internal.simulate_post(OFFLINE_PATH, json=body)
        assert bad.status_code == 422, (body, bad.text)
        assert bad.json["error"]["code"] == "VALIDATION_ERROR", (body, bad.text)


def test_reset_all_sets_every_active_mitra_online_with_a_fresh_heartbeat(
    internal: testing.TestClient, services: Services, make_mitra
) -> None:
    offline = make_mitra("+6281299900011", "Bestie Satu")
    stale = make_mitra("+6281299900012", "Bestie Dua")
    never = make_mitra("+6281299900013", "Bestie Tiga")
    inactive = make_mitra("+6281299900014", "Bestie Nonaktif", active=False)
    set_online(services.db, services.valkey, str(offline["id"]), True)
    set_online(services.db, services.valkey, str(offline["id"]), False)
    set_online(services.db, services.valkey, str(stale["id"]), True)
    # Silent for ten minutes: online on paper, stale for the sweep and for availability.
    services.db.execute(
        "UPDATE mitra_online_status SET last_heartbeat_at = now() - interval '10 minutes' WHERE mitra_id = %(m)s",
        {"m": stale["id"]},
    )
    services.valkey.set(heartbeat_key(str(stale["id"])), time.time() - 600)
    assert _available(services) == []

    reset = internal.simulate_post(RESET_ALL)
    assert reset.status_code == 200, reset.text
    active = {str(m["id"]) for m in (offline, stale, never)}
    assert reset.json["data"]["online"] == 3
    assert set(reset.json["data"]["mitra_ids"]) == active
    assert reset.json["data"]["changed"] == 2  # the stale one was online already: only its heartbeat is new
    assert sweep_stale(services.db, services.valkey, services.config) == []  # nobody is stale any more
    assert set(_available(services)) == active
    for mitra_id in active:
        state = _state(services, mitra_id)
        assert state["db_online"] is True
        assert state["valkey_online"] is True
        assert state["age"] is not None
        assert state["age"].total_seconds() < 5  # type: ignore[attr-defined]
    assert _state(services, inactive["id"])["db_online"] is None  # deactivated mitras stay out
    assert internal.simulate_post(RESET_ALL, json={"all": True}).status_code == 422  # no fields to send
