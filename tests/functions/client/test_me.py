"""Anonymous sign-up, the customer profile, onboarding flag and push-token registration."""

from __future__ import annotations

from falcon import testing

from lib.config.app import set_values
from lib.services import Services
from tests.conftest import bearer


def test_anonymous_signup(public: testing.TestClient) -> None:
    result = public.simulate_post("/api/shared/auth/anonymous", json={"display_name": "  Bunga  ", "extra": 1})
    assert result.status_code == 201
    data = result.json["data"]
    assert data["user"]["display_name"] == "Bunga" and data["user"]["is_anonymous"] is True
    no_body = public.simulate_post("/api/shared/auth/anonymous")
    assert no_body.status_code == 201
    assert no_body.json["data"]["user"]["call_name"] == "Anonim"


def test_anonymous_signup_is_rate_limited_per_ip(public: testing.TestClient, services: Services) -> None:
    set_values(services.db, services.bus, {"anonymous_signups_per_ip_per_hour": 2}, None)
    services.config.invalidate()
    codes = [public.simulate_post("/api/shared/auth/anonymous", remote_addr="10.3.3.3").status_code for _ in range(3)]
    assert codes == [201, 201, 429]


def test_profile_edit_and_usp(public: testing.TestClient, anonymous) -> None:
    token = anonymous()["access_token"]
    me = public.simulate_get("/api/client/me", headers=bearer(token)).json["data"]
    assert me["usp_seen"] is False
    patched = public.simulate_patch("/api/client/me", headers=bearer(token), json={"display_name": "Melati"})
    assert patched.json["data"]["call_name"] == "Melati"
    too_long = public.simulate_patch("/api/client/me", headers=bearer(token), json={"display_name": "x" * 41})
    assert too_long.status_code == 422
    first = public.simulate_post("/api/client/usp-seen", headers=bearer(token)).json["data"]
    second = public.simulate_post("/api/client/usp-seen", headers=bearer(token)).json["data"]
    assert first["usp_seen"] is True and first["usp_seen_at"] == second["usp_seen_at"]


def test_fcm_tokens(public: testing.TestClient, services: Services, anonymous) -> None:
    a, b = anonymous()["access_token"], anonymous()["access_token"]
    put = public.simulate_put(
        "/api/shared/devices/fcm-token", headers=bearer(a), json={"token": "dev-1", "platform": "android"}
    )
    assert put.status_code == 204
    bad = public.simulate_put(
        "/api/shared/devices/fcm-token", headers=bearer(a), json={"token": "dev-1", "platform": "web"}
    )
    assert bad.status_code == 422
    # The device changes hands: the last registration owns the token.
    public.simulate_put("/api/shared/devices/fcm-token", headers=bearer(b), json={"token": "dev-1", "platform": "ios"})
    rows = services.db.fetch_all("SELECT token, platform FROM device_tokens")
    assert rows == [{"token": "dev-1", "platform": "ios"}]
    public.simulate_delete("/api/shared/devices/fcm-token", headers=bearer(a), json={"token": "dev-1"})
    assert services.db.fetch_one("SELECT count(*) AS n FROM device_tokens") == {"n": 1}  # not a's to delete
    assert (
        public.simulate_delete("/api/shared/devices/fcm-token", headers=bearer(b), json={"token": "dev-1"}).status_code
        == 204
    )
    assert services.db.fetch_one("SELECT count(*) AS n FROM device_tokens") == {"n": 0}


def test_a_mitra_keeps_one_device(public: testing.TestClient, services: Services, make_mitra) -> None:
    from lib.auth.flows import access_for, sign_in

    mitra = make_mitra()
    with services.db.connection() as conn:
        grant = sign_in(conn, services.settings, "mitra", str(mitra["id"]))
    token = access_for(services.settings, grant)["access_token"]
    for name in ("old-phone", "new-phone"):
        public.simulate_put(
            "/api/shared/devices/fcm-token", headers=bearer(token), json={"token": name, "platform": "android"}
        )
    assert [r["token"] for r in services.db.fetch_all("SELECT token FROM device_tokens")] == ["new-phone"]
