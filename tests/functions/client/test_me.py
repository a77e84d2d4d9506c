"""Anonymous sign-up, the customer profile, onboarding flag and push-token registration."""

from __future__ import annotations

from typing import Any

from falcon import testing

from lib.auth.identity import resolve_customer
from lib.config.app import set_values
from lib.services import Services
from tests.conftest import bearer


def test_anonymous_signup(public: testing.TestClient) -> None:
    result = public.simulate_post("/api/shared/auth/anonymous", json={"display_name": "  Bunga  ", "extra": 1})
    assert result.status_code == 201
    data = result.json["data"]
    assert data["user"]["display_name"] == "Bunga"
    assert data["user"]["is_anonymous"] is True
    no_body = public.simulate_post("/api/shared/auth/anonymous")
    assert no_body.status_code == 201
    assert no_body.json["data"]["user"]["call_name"] == "Anonim"


def test_anonymous_signup_is_rate_limited_per_ip(public: testing.TestClient, services: Services) -> None:
    set_values(services.db, services.bus, {"anonymous_signups_per_ip_per_hour": 2}, None)
    services.config.invalidate()
    codes = [public.simulate_post("/api/shared/auth/anonymous", remote_addr="10.3.3.3").status_code for _ in range(3)]
    assert codes == [201, 201, 429]


def test_anonymous_signup_limit_counts_an_ipv6_network_not_each_address(
    public: testing.TestClient, services: Services
) -> None:
    """A phone gets a whole /64: a fresh address per request must not be a fresh limit."""
    set_values(services.db, services.bus, {"anonymous_signups_per_ip_per_hour": 2}, None)
    services.config.invalidate()
    same_64 = ["2001:db8:7:1::1", "2001:db8:7:1::2", "2001:db8:7:1:ffff:ffff:ffff:ffff"]
    codes = [public.simulate_post("/api/shared/auth/anonymous", remote_addr=a).status_code for a in same_64]
    assert codes == [201, 201, 429]
    assert public.simulate_post("/api/shared/auth/anonymous", remote_addr="2001:db8:7:2::1").status_code == 201


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
    assert first["usp_seen"] is True
    assert first["usp_seen_at"] == second["usp_seen_at"]


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


ACCOUNT_FIELDS = {"account_belongs_to", "has_consulted", "linked_identities"}


def _me(public: testing.TestClient, token: str) -> dict[str, Any]:
    result = public.simulate_get("/api/client/me", headers=bearer(token))
    assert result.status_code == 200, result.text
    data: dict[str, Any] = result.json["data"]
    return data


def _link(services: Services, caller_id: str, phone: str) -> str:
    """Verify a phone as the logged-in caller, as OTP verify does (DOMAIN.md identity resolution)."""
    with services.db.connection() as conn:
        return resolve_customer(conn, "phone", phone, caller_id=caller_id, phone=phone)


def test_me_says_whom_the_account_belongs_to_and_which_identities_are_linked(
    public: testing.TestClient, services: Services, anonymous
) -> None:
    first = anonymous("Mawar")
    fresh = _me(public, first["access_token"])
    assert set(fresh) >= ACCOUNT_FIELDS
    assert fresh["account_belongs_to"] is None
    assert fresh["has_consulted"] is False
    assert fresh["linked_identities"] == ["anonymous"]
    # 1. a new identity upgrades the anonymous row in place: the same account, now with a phone.
    owner = first["user"]["id"]
    assert _link(services, owner, "+6281255500001") == owner
    upgraded = _me(public, first["access_token"])
    assert upgraded["linked_identities"] == ["phone"]
    assert upgraded["account_belongs_to"] is None
    # 2. the same phone verified from another anonymous account: that row belongs to the first.
    second = anonymous()
    assert _link(services, second["user"]["id"], "+6281255500001") == owner
    belongs = _me(public, second["access_token"])
    assert belongs["account_belongs_to"] == owner
    assert belongs["linked_identities"] == ["anonymous"]
    # Links keep their order; a Google identity joins the phone.
    with services.db.connection() as conn:
        resolve_customer(conn, "google", "google-sub-1", caller_id=owner, email="m@example.com")
    assert _me(public, first["access_token"])["linked_identities"] == ["phone", "google"]
    # A second phone is still one kind of identity.
    assert _link(services, owner, "+6281255500002") == owner
    linked = services.db.fetch_one(
        "SELECT count(*) AS n FROM customer_identities WHERE customer_id = %(c)s", {"c": owner}
    )
    assert linked == {"n": 3}
    assert _me(public, first["access_token"])["linked_identities"] == ["phone", "google"]


def test_me_says_whether_the_customer_has_consulted_before(
    public: testing.TestClient, services: Services, anonymous
) -> None:
    customer = anonymous()
    token, customer_id = customer["access_token"], customer["user"]["id"]

    def session(status: str) -> None:
        services.db.execute(
            "INSERT INTO chat_sessions (customer_id, status, ended_at) "
            "VALUES (%(c)s, %(s)s, CASE WHEN %(s)s <> 'active' THEN now() END)",
            {"c": customer_id, "s": status},
        )

    # A search that ended without a chat, or a chat still going, is no consultation yet.
    session("cancelled")
    session("expired")
    assert _me(public, token)["has_consulted"] is False
    session("active")
    assert _me(public, token)["has_consulted"] is False
    services.db.execute("UPDATE chat_sessions SET status = 'closing', ended_at = now() WHERE status = 'active'")
    assert _me(public, token)["has_consulted"] is True
    # The other answers that carry the profile carry the same document.
    patched = public.simulate_patch("/api/client/me", headers=bearer(token), json={"display_name": "Melati"})
    seen = public.simulate_post("/api/client/usp-seen", headers=bearer(token))
    for result in (patched, seen):
        assert result.status_code == 200, result.text
        assert result.json["data"]["has_consulted"] is True
        assert set(result.json["data"]) >= ACCOUNT_FIELDS
