"""Operator configuration: typed getters, validation of every key, audit, live invalidation."""

from __future__ import annotations

import time
from typing import Any

import pytest
from falcon import testing

from lib.config.app import KEYS
from lib.config.env import Settings
from lib.services import Services
from runtime.app import create_app
from runtime.container import build_services
from tests.conftest import bearer

GOOD: dict[str, Any] = {
    "max_customers_per_mitra": 5,
    "mitra_stale_after_seconds": 90,
    "mitra_disconnect_grace_seconds": 30,
    "require_ping": False,
    "pairing_blast_timeout_seconds": 120,
    "returning_chat_confirmation_timeout_seconds": 30,
    "extension_timeout_seconds": 15,
    "extension_default_action_on_timeout": "auto_reject",
    "payment_request_timeout_minutes": 30,
    "extension_refusal_resumes": True,
    "early_end_mitra_enabled": True,
    "sensitive_flip_confirmation_enabled": False,
    "sensitive_flag_one_way_latch": True,
    "support_handles_json": {"whatsapp": "+628111", "instagram": "@halobestie"},
    "otp_ttl_seconds": 120,
    "otp_max_attempts": 3,
    "otp_resend_cooldown_seconds": 30,
    "otp_max_per_phone_per_hour": 10,
    "otp_max_per_ip_per_hour": 100,
    "cc_lockout_threshold": 10,
    "cc_lockout_minutes": 30,
    "otp_bypass_enabled": True,
    "anonymous_signups_per_ip_per_hour": 500,
    "cc_login_attempts_per_ip_per_hour": 1000,
}
WRONG_TYPE: dict[str, Any] = {
    "int": "5",
    "bool": "true",
    "enum": 1,
    "object": ["whatsapp"],
}


def test_every_key_has_a_good_example() -> None:
    assert set(GOOD) == set(KEYS)


@pytest.fixture
def admin(cc_login) -> str:
    return str(cc_login("admin")[1])


def _patch(internal: testing.TestClient, token: str, body: dict[str, Any]) -> testing.Result:
    return internal.simulate_patch("/internal/config", headers=bearer(token), json=body)


def test_get_lists_every_key_with_bounds_and_env(internal: testing.TestClient, admin: str) -> None:
    data = internal.simulate_get("/internal/config", headers=bearer(admin)).json["data"]
    items = {i["key"]: i for i in data["items"]}
    assert set(items) == set(KEYS)
    assert items["max_customers_per_mitra"] | {} == {
        **items["max_customers_per_mitra"],
        "value": 3,
        "type": "int",
        "min": 1,
        "max": 20,
    }
    assert items["mitra_stale_after_seconds"]["min"] == 30  # the heartbeat cadence
    assert items["extension_default_action_on_timeout"]["choices"] == ["auto_approve", "auto_reject"]
    assert data["env"]["heartbeat_cadence_seconds"] == 30


@pytest.mark.parametrize("key", sorted(KEYS))
def test_each_key_accepts_a_good_value(internal: testing.TestClient, admin: str, key: str) -> None:
    result = _patch(internal, admin, {key: GOOD[key]})
    assert result.status_code == 200, result.text
    assert {i["key"]: i["value"] for i in result.json["data"]["items"]}[key] == GOOD[key]


@pytest.mark.parametrize("key", sorted(KEYS))
def test_each_key_refuses_a_wrong_type(internal: testing.TestClient, admin: str, key: str) -> None:
    result = _patch(internal, admin, {key: WRONG_TYPE[KEYS[key].type]})
    assert result.status_code == 422
    assert key in result.json["error"]["details"]["fields"]


@pytest.mark.parametrize("key", sorted(k for k, v in KEYS.items() if v.type == "int"))
def test_each_integer_refuses_out_of_range_and_floats(internal: testing.TestClient, admin: str, key: str) -> None:
    low, high = KEYS[key].min or 0, KEYS[key].max or 0
    for bad in (low - 1, high + 1, float(GOOD[key]) + 0.5, True):
        result = _patch(internal, admin, {key: bad})
        assert result.status_code == 422, (key, bad)


def test_stale_after_must_cover_the_heartbeat_cadence(internal: testing.TestClient, admin: str) -> None:
    result = _patch(internal, admin, {"mitra_stale_after_seconds": 29})
    assert result.status_code == 422
    assert "heartbeat cadence" in result.json["error"]["details"]["fields"]["mitra_stale_after_seconds"][0]


def test_unknown_key_and_partial_failure_store_nothing(
    internal: testing.TestClient, services: Services, admin: str
) -> None:
    assert _patch(internal, admin, {"no_such_key": 1}).status_code == 422
    result = _patch(internal, admin, {"max_customers_per_mitra": 7, "otp_max_attempts": 99})
    assert result.status_code == 422
    assert set(result.json["error"]["details"]["fields"]) == {"otp_max_attempts"}
    row = services.db.fetch_one("SELECT value FROM app_config WHERE key = 'max_customers_per_mitra'")
    assert row == {"value": 3}


def test_writes_are_audited(internal: testing.TestClient, services: Services, cc_login) -> None:
    user, token, _ = cc_login("admin")
    _patch(internal, token, {"max_customers_per_mitra": 4})
    audit = services.db.fetch_one("SELECT * FROM app_config_audit WHERE key = 'max_customers_per_mitra'")
    assert audit is not None
    assert (audit["old_value"], audit["new_value"], audit["changed_by"]) == (3, 4, user["id"])
    item = next(
        i
        for i in internal.simulate_get("/internal/config", headers=bearer(token)).json["data"]["items"]
        if i["key"] == "max_customers_per_mitra"
    )
    assert item["updated_by"] == str(user["id"])
    assert item["updated_at"]


def test_operator_reads_but_cannot_write(internal: testing.TestClient, cc_login) -> None:
    _, operator, _ = cc_login("operator")
    assert internal.simulate_get("/internal/config", headers=bearer(operator)).status_code == 200
    assert _patch(internal, operator, {"max_customers_per_mitra": 4}).status_code == 403
    assert (
        internal.simulate_patch(
            "/internal/config/mitra-ping", headers=bearer(operator), json={"require_ping": False}
        ).status_code
        == 403
    )


def test_mitra_ping_keeps_its_contract(internal: testing.TestClient, admin: str) -> None:
    got = internal.simulate_get("/internal/config/mitra-ping", headers=bearer(admin)).json["data"]
    assert got == {"require_ping": True, "stale_after_seconds": 45, "heartbeat_cadence_seconds": 30}
    bad = internal.simulate_patch(
        "/internal/config/mitra-ping", headers=bearer(admin), json={"stale_after_seconds": 20}
    )
    assert bad.status_code == 422
    assert "stale_after_seconds" in bad.json["error"]["details"]["fields"]
    ok = internal.simulate_patch(
        "/internal/config/mitra-ping", headers=bearer(admin), json={"stale_after_seconds": 60, "require_ping": False}
    )
    assert ok.json["data"] == {"require_ping": False, "stale_after_seconds": 60, "heartbeat_cadence_seconds": 30}


def test_a_change_reaches_another_process_within_a_second(
    internal: testing.TestClient, settings: Settings, admin: str
) -> None:
    other = build_services(settings, application_name="other-process")
    try:
        client = testing.TestClient(create_app("public", other))
        assert client.simulate_get("/api/shared/support-handles").json["data"] == {}  # cached now
        assert other.bus.wait_subscribed(2)
        _patch(internal, admin, {"support_handles_json": {"email": "halo@bestie.id"}})
        started = time.monotonic()
        while client.simulate_get("/api/shared/support-handles").json["data"] != {"email": "halo@bestie.id"}:
            assert time.monotonic() - started < 1.0, "the other process did not see the change"
            time.sleep(0.02)
    finally:
        other.close()


def test_without_valkey_a_change_arrives_when_the_cache_expires(
    internal: testing.TestClient, make_settings, admin: str
) -> None:
    from tests.helpers import free_port

    other = build_services(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"), application_name="no-valkey")
    try:
        client = testing.TestClient(create_app("public", other))
        assert client.simulate_get("/api/shared/support-handles").json["data"] == {}
        _patch(internal, admin, {"support_handles_json": {"whatsapp": "+62811"}})
        started = time.monotonic()
        while client.simulate_get("/api/shared/support-handles").json["data"] != {"whatsapp": "+62811"}:
            assert time.monotonic() - started < 4.0, "the cache did not expire"
            time.sleep(0.1)
    finally:
        other.close()


def test_a_bad_row_cannot_crash_a_request(public: testing.TestClient, services: Services) -> None:
    services.db.execute("UPDATE app_config SET value = '\"lots\"' WHERE key = 'support_handles_json'")
    services.config.invalidate()
    result = public.simulate_get("/api/shared/support-handles")
    assert result.status_code == 200
    assert result.json["data"] == {}
