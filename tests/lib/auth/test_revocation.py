"""Revocation reaches live access tokens in every process within about a second, Valkey or not."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from falcon import testing

from lib.config.env import Settings
from runtime.app import create_app
from runtime.container import build_services
from tests.conftest import CC_ORIGIN, CC_PASSWORD, bearer
from tests.helpers import free_port


@pytest.fixture
def second_process(settings: Settings) -> Iterator[testing.TestClient]:
    """Another app instance with its own services: what a second worker or replica sees."""
    svc = build_services(settings, application_name="second")
    yield testing.TestClient(create_app("public", svc))
    svc.close()


@pytest.fixture
def second_process_without_valkey(make_settings) -> Iterator[testing.TestClient]:
    svc = build_services(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"), application_name="no-valkey")
    yield testing.TestClient(create_app("public", svc))
    svc.close()


def _refused_within(client: testing.TestClient, token: str, seconds: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if client.simulate_get("/api/client/me", headers=bearer(token)).status_code == 401:
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"token still accepted after {seconds}s")


def test_logout_stops_the_token_here_and_in_another_process(
    public: testing.TestClient, second_process: testing.TestClient, anonymous
) -> None:
    pair = anonymous()
    token = pair["access_token"]
    assert second_process.simulate_get("/api/client/me", headers=bearer(token)).status_code == 200  # warm + cached
    assert public.simulate_post("/api/shared/auth/logout", headers=bearer(token)).status_code == 204
    assert public.simulate_get("/api/client/me", headers=bearer(token)).status_code == 401
    assert _refused_within(second_process, token, 1.5) < 1.5
    refresh = public.simulate_post("/api/shared/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refresh.status_code == 401


def test_revocation_reaches_a_process_whose_valkey_is_down(
    public: testing.TestClient, second_process_without_valkey: testing.TestClient, anonymous
) -> None:
    token = anonymous()["access_token"]
    client = second_process_without_valkey
    assert client.simulate_get("/api/client/me", headers=bearer(token)).status_code == 200
    public.simulate_post("/api/shared/auth/logout", headers=bearer(token))
    assert _refused_within(client, token, 3.0) < 2.5  # the PostgreSQL poll, every second


def test_a_new_process_knows_earlier_revocations(public: testing.TestClient, settings: Settings, anonymous) -> None:
    token = anonymous()["access_token"]
    public.simulate_post("/api/shared/auth/logout", headers=bearer(token))
    svc = build_services(settings, application_name="restarted")
    try:
        fresh = testing.TestClient(create_app("public", svc))
        assert fresh.simulate_get("/api/client/me", headers=bearer(token)).status_code == 401
    finally:
        svc.close()


def test_password_change_ends_other_sessions_only(internal: testing.TestClient, make_cc_user) -> None:
    user = make_cc_user("admin")

    def login() -> str:
        r = internal.simulate_post("/internal/auth/login", json={"email": user["email"], "password": CC_PASSWORD})
        return str(r.json["data"]["access_token"])

    mine, other = login(), login()
    result = internal.simulate_post(
        "/internal/auth/password",
        headers=bearer(mine),
        json={"current_password": CC_PASSWORD, "new_password": "a whole new passphrase"},
    )
    assert result.status_code == 204, result.text
    assert internal.simulate_get("/internal/auth/me", headers=bearer(other)).status_code == 401
    assert internal.simulate_get("/internal/auth/me", headers=bearer(mine)).status_code == 200


def test_disabling_a_cc_user_ends_its_sessions(internal: testing.TestClient, cc_login) -> None:
    _, admin, _ = cc_login("admin")
    victim, victim_token, victim_cookie = cc_login("operator")
    assert internal.simulate_get("/internal/auth/me", headers=bearer(victim_token)).status_code == 200
    result = internal.simulate_patch(
        f"/internal/users/{victim['id']}", headers=bearer(admin), json={"is_active": False}
    )
    assert result.status_code == 200
    assert result.json["data"]["is_active"] is False
    assert internal.simulate_get("/internal/auth/me", headers=bearer(victim_token)).status_code == 401
    refresh = internal.simulate_post(
        "/internal/auth/refresh", headers={"Origin": CC_ORIGIN, "Cookie": f"cc_refresh_token={victim_cookie}"}
    )
    assert refresh.status_code == 401


def test_rate_limits_fall_back_per_process_when_valkey_is_down(make_settings) -> None:
    from lib.config.app import set_values

    svc = build_services(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    try:
        set_values(svc.db, None, {"anonymous_signups_per_ip_per_hour": 2}, None)
        client = testing.TestClient(create_app("public", svc))
        codes = [
            client.simulate_post("/api/shared/auth/anonymous", remote_addr="10.4.4.4").status_code for _ in range(3)
        ]
    finally:
        svc.close()
    assert codes == [201, 201, 429]  # still limited, and sign-up still works without Valkey


def test_tokens_and_passwords_never_reach_the_logs(
    public: testing.TestClient, internal, cc_login, anonymous, caplog
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    pair = anonymous()
    refreshed = public.simulate_post("/api/shared/auth/refresh", json={"refresh_token": pair["refresh_token"]}).json[
        "data"
    ]
    public.simulate_get("/api/client/me", headers=bearer(refreshed["access_token"]))
    _, cc_token, cookie = cc_login()
    internal.simulate_post("/internal/auth/login", json={"email": "x@y.z", "password": "a wrong password"})
    text = caplog.text
    for secret in (
        pair["refresh_token"],
        refreshed["refresh_token"],
        refreshed["access_token"],
        cc_token,
        cookie,
        CC_PASSWORD,
        "a wrong password",
    ):
        assert secret not in text
