"""seed-customer and seed-mitra sign in as the apps' own sign-in does; reset-phone forgets a number's
code requests and identity link, so a flow can sign up with it again."""

from __future__ import annotations

from falcon import testing

from lib.auth.otp import hash_bypass_code
from lib.config.app import set_values
from lib.services import Services
from tests.conftest import bearer

SEED_CUSTOMER, SEED_MITRA, RESET_PHONE = (
    "/internal/_test/seed-customer",
    "/internal/_test/seed-mitra",
    "/internal/_test/reset-phone",
)
PHONE = "+6281377700001"


def _me(public: testing.TestClient, token: str, path: str = "/api/client/me") -> testing.Result:
    return public.simulate_get(path, headers=bearer(token))


def test_seed_customer_anonymous_signs_in_like_the_first_launch(
    internal: testing.TestClient, public: testing.TestClient, anonymous
) -> None:
    seeded = internal.simulate_post(SEED_CUSTOMER)
    assert seeded.status_code == 201, seeded.text
    data = seeded.json["data"]
    assert set(data) == set(anonymous()) | {"customer_id"}
    assert data["user_type"] == "customer"
    assert data["user"]["id"] == data["customer_id"]
    assert data["user"]["is_anonymous"] is True  # the same pair
    me = _me(public, data["access_token"])
    assert me.status_code == 200
    assert me.json["data"]["call_name"] == "Anonim"
    refreshed = public.simulate_post("/api/shared/auth/refresh", json={"refresh_token": data["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text


def test_seed_customer_with_a_phone_is_a_verified_customer(
    internal: testing.TestClient, public: testing.TestClient, services: Services
) -> None:
    seeded = internal.simulate_post(SEED_CUSTOMER, json={"phone": "0813-7770-0001", "display_name": "  Rani "})
    assert seeded.status_code == 201, seeded.text
    data = seeded.json["data"]
    me = _me(public, data["access_token"]).json["data"]
    assert me["is_anonymous"] is False
    assert me["display_name"] == "Rani"
    assert me["phone"].endswith("001")
    assert me["phone"] != PHONE  # masked, as the app always sees it
    link = services.db.fetch_all("SELECT customer_id, provider, subject FROM customer_identities")
    assert [(str(r["customer_id"]), r["provider"], r["subject"]) for r in link] == [
        (data["customer_id"], "phone", PHONE)
    ]
    twice = internal.simulate_post(SEED_CUSTOMER, json={"phone": PHONE})
    assert twice.status_code == 409
    assert twice.json["error"]["code"] == "PHONE_TAKEN"
    assert services.db.fetch_one("SELECT count(*) AS n FROM customers") == {"n": 1}  # nothing left behind
    for body in ({"phone": "12345"}, {"display_name": "x" * 41}, {"email": "a@b.c"}):
        assert internal.simulate_post(SEED_CUSTOMER, json=body).status_code == 422, body


def test_seed_mitra_creates_signs_in_and_resets_by_phone(
    internal: testing.TestClient, public: testing.TestClient, services: Services, anonymous
) -> None:
    created = internal.simulate_post(SEED_MITRA, json={"phone": PHONE, "display_name": "Bestie Uji", "online": True})
    assert created.status_code == 201, created.text
    data = created.json["data"]
    assert set(data) == set(anonymous()) | {"mitra_id", "created"}
    assert data["created"] is True
    assert data["user"] == {**data["user"], "id": data["mitra_id"], "is_active": True, "is_online": True}
    status = _me(public, data["access_token"], "/api/mitra/status")
    assert status.status_code == 200
    assert status.json["data"]["is_online"] is True

    again = internal.simulate_post(SEED_MITRA, json={"phone": "081377700001", "display_name": "Bestie Baru"})
    assert again.status_code == 200, again.text
    assert again.json["data"]["mitra_id"] == data["mitra_id"]
    assert again.json["data"]["created"] is False
    assert again.json["data"]["user"]["display_name"] == "Bestie Baru"
    assert again.json["data"]["user"]["is_online"] is False  # as the body says (online defaults to false)
    assert services.db.fetch_one("SELECT count(*) AS n FROM mitras") == {"n": 1}

    off = internal.simulate_post(SEED_MITRA, json={"phone": PHONE, "display_name": "Bestie Baru", "is_active": False})
    assert off.status_code == 200, off.text
    assert off.json["data"]["access_token"] is None
    assert off.json["data"]["refresh_token"] is None
    assert off.json["data"]["user"]["is_active"] is False
    # Deactivated through the control center's path: every session of the account is revoked.
    live = services.db.fetch_one(
        "SELECT count(*) AS n FROM auth_sessions WHERE user_id = %(m)s AND revoked_at IS NULL", {"m": data["mitra_id"]}
    )
    assert live == {"n": 0}
    login = public.simulate_post("/api/mitra/auth/otp/request", json={"phone": PHONE})
    assert login.status_code == 403
    assert login.json["error"]["code"] == "ACCOUNT_INACTIVE"

    back = internal.simulate_post(SEED_MITRA, json={"phone": PHONE, "display_name": "Bestie Baru", "online": True})
    assert back.status_code == 200
    assert back.json["data"]["user"]["is_active"] is True
    assert _me(public, back.json["data"]["access_token"], "/api/mitra/me").status_code == 200
    bad = internal.simulate_post(
        SEED_MITRA, json={"phone": PHONE, "display_name": "B", "is_active": False, "online": True}
    )
    assert bad.status_code == 422
    assert "online" in bad.json["error"]["details"]["fields"]
    assert internal.simulate_post(SEED_MITRA, json={"phone": PHONE}).status_code == 422  # a name is needed


def test_reset_phone_lets_a_flow_sign_up_with_the_number_again(
    internal: testing.TestClient, public: testing.TestClient, services: Services
) -> None:
    # The flow signs in through the OTP screen with a bypass code (docs/e2e-fixtures.md).
    set_values(services.db, None, {"otp_bypass_enabled": True}, None)
    services.config.invalidate()
    services.db.execute(
        "INSERT INTO otp_bypass_entries (phone, code_hash, expires_at) VALUES (%(p)s, %(h)s, now() + interval '1 day')",
        {"p": PHONE, "h": hash_bypass_code("424242")},
    )
    old = internal.simulate_post(SEED_CUSTOMER, json={"phone": PHONE, "display_name": "Lama"}).json["data"]
    assert public.simulate_post("/api/client/auth/otp/request", json={"phone": PHONE}).status_code == 200
    cooling = public.simulate_post("/api/client/auth/otp/request", json={"phone": PHONE})
    assert cooling.status_code == 429
    assert cooling.json["error"]["code"] == "OTP_COOLDOWN"

    reset = internal.simulate_post(RESET_PHONE, json={"phone": "081377700001"})
    assert reset.status_code == 200, reset.text
    assert reset.json["data"] == {
        "phone": PHONE,
        "deleted": {"otp_requests": 1, "phone_identities": 1},
        "customers_detached": [old["customer_id"]],
        "mitra_id": None,
    }
    # The old account stays (with its history), without the number and anonymous again.
    row = services.db.fetch_one("SELECT phone, is_anonymous FROM customers WHERE id = %(c)s", {"c": old["customer_id"]})
    assert row == {"phone": None, "is_anonymous": True}

    # The app's own sign-up now: a code at once (no cooldown), and a new verified customer; the
    # bypass entry is operator configuration and stays.
    sent = public.simulate_post("/api/client/auth/otp/request", json={"phone": PHONE})
    assert sent.status_code == 200, sent.text
    verified = public.simulate_post(
        "/api/client/auth/otp/verify", json={"otp_request_id": sent.json["data"]["otp_request_id"], "code": "424242"}
    )
    assert verified.status_code == 200, verified.text
    user = verified.json["data"]["user"]
    assert user["id"] != old["customer_id"]
    assert user["is_anonymous"] is False


def test_reset_phone_clears_the_hourly_limit_and_leaves_a_mitra_account(
    internal: testing.TestClient, public: testing.TestClient, services: Services, make_mitra
) -> None:
    set_values(services.db, None, {"otp_max_per_phone_per_hour": 1, "otp_resend_cooldown_seconds": 10}, None)
    services.config.invalidate()
    mitra = make_mitra(PHONE, "Bestie Uji")
    assert public.simulate_post("/api/mitra/auth/otp/request", json={"phone": PHONE}).status_code == 200
    services.db.execute("UPDATE otp_requests SET created_at = created_at - interval '11 seconds'")  # past cooldown
    limited = public.simulate_post("/api/mitra/auth/otp/request", json={"phone": PHONE})
    assert limited.status_code == 429
    assert limited.json["error"]["code"] == "OTP_RATE_LIMIT_PHONE"
    reset = internal.simulate_post(RESET_PHONE, json={"phone": PHONE})
    assert reset.json["data"]["deleted"] == {"otp_requests": 1, "phone_identities": 0}
    assert reset.json["data"]["mitra_id"] == str(mitra["id"])
    assert services.db.fetch_one("SELECT phone, is_active FROM mitras") == {"phone": PHONE, "is_active": True}
    assert public.simulate_post("/api/mitra/auth/otp/request", json={"phone": PHONE}).status_code == 200
    assert internal.simulate_post(RESET_PHONE, json={}).status_code == 422
