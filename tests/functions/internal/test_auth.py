"""Control-center login, lockout, throttling, cookie refresh with an Origin check, logout, passwords."""

from __future__ import annotations

import bcrypt
import pytest
from falcon import testing

from lib.auth.passwords import BCRYPT_COST, hash_password
from lib.config.app import set_values
from lib.services import Services
from tests.conftest import CC_ORIGIN, CC_PASSWORD, bearer

LOGIN = "/internal/auth/login"


def _login(
    internal: testing.TestClient, email: str, password: str = CC_PASSWORD, ip: str = "10.1.1.1"
) -> testing.Result:
    return internal.simulate_post(LOGIN, json={"email": email, "password": password}, remote_addr=ip)


def test_login_sets_a_strict_cookie_and_no_refresh_token_in_the_body(
    internal: testing.TestClient, make_cc_user
) -> None:
    user = make_cc_user("operator")
    result = _login(internal, user["email"].upper())
    assert result.status_code == 200, result.text
    data = result.json["data"]
    assert "refresh_token" not in data
    assert data["user"]["role"] == "operator"
    assert "sessions.manage" in data["user"]["permissions"]
    cookie = result.cookies["cc_refresh_token"]
    assert cookie.http_only
    assert cookie.secure
    assert cookie.same_site == "Strict"
    assert cookie.path == "/internal/auth"
    assert cookie.max_age
    assert cookie.max_age > 29 * 86400


def test_wrong_password_and_unknown_user_look_the_same(internal: testing.TestClient, make_cc_user) -> None:
    user = make_cc_user()
    wrong = _login(internal, user["email"], "not the password at all")
    unknown = _login(internal, "nobody@halobestie.test")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json["error"]["code"] == unknown.json["error"]["code"] == "INVALID_CREDENTIALS"


def test_lockout_after_threshold(internal: testing.TestClient, services: Services, make_cc_user) -> None:
    user = make_cc_user()
    for _ in range(5):
        assert _login(internal, user["email"], "wrong password here").status_code == 401
    locked = _login(internal, user["email"])  # even the right password
    assert locked.status_code == 423
    assert locked.json["error"]["code"] == "ACCOUNT_LOCKED"
    assert 14 * 60 < int(locked.headers["Retry-After"]) <= 15 * 60 + 1
    services.db.execute(
        "UPDATE cc_users SET locked_until = now() - interval '1 second' WHERE id = %(id)s", {"id": user["id"]}
    )
    assert _login(internal, user["email"]).status_code == 200
    assert services.db.fetch_one("SELECT kind FROM security_events WHERE kind = 'cc_account_locked'")


@pytest.mark.parametrize(
    ("first", "same_network", "other_network"),
    [("10.7.7.9", "10.7.7.9", "10.7.7.10"), ("2001:db8:9::1", "2001:db8:9::2", "2001:db8:9:1::1")],  # IPv6: its /64
)
def test_per_ip_throttling(
    internal: testing.TestClient, services: Services, make_cc_user, first: str, same_network: str, other_network: str
) -> None:
    set_values(services.db, services.bus, {"cc_login_attempts_per_ip_per_hour": 3}, None)
    services.config.invalidate()
    user = make_cc_user()
    for _ in range(3):
        _login(internal, user["email"], "wrong password here", ip=first)
    throttled = _login(internal, user["email"], ip=same_network)
    assert throttled.status_code == 429
    assert "Retry-After" in throttled.headers
    assert _login(internal, user["email"], ip=other_network).status_code == 200


def test_disabled_user_cannot_log_in(internal: testing.TestClient, make_cc_user) -> None:
    user = make_cc_user(active=False)
    result = _login(internal, user["email"])
    assert result.status_code == 403
    assert result.json["error"]["code"] == "ACCOUNT_INACTIVE"


def test_refresh_rotates_the_cookie_for_the_right_origin_only(internal: testing.TestClient, cc_login) -> None:
    _, _, cookie = cc_login()
    foreign = internal.simulate_post(
        "/internal/auth/refresh", headers={"Origin": "https://evil.example", "Cookie": f"cc_refresh_token={cookie}"}
    )
    assert foreign.status_code == 403
    missing = internal.simulate_post("/internal/auth/refresh", headers={"Cookie": f"cc_refresh_token={cookie}"})
    assert missing.status_code == 403
    ok = internal.simulate_post(
        "/internal/auth/refresh", headers={"Origin": CC_ORIGIN, "Cookie": f"cc_refresh_token={cookie}"}
    )
    assert ok.status_code == 200, ok.text
    new_cookie = ok.cookies["cc_refresh_token"].value
    assert new_cookie != cookie
    me = internal.simulate_get("/internal/auth/me", headers=bearer(ok.json["data"]["access_token"]))
    assert me.status_code == 200


def test_refresh_without_a_cookie_is_401(internal: testing.TestClient) -> None:
    result = internal.simulate_post("/internal/auth/refresh", headers={"Origin": CC_ORIGIN})
    assert result.status_code == 401
    assert result.json["error"]["code"] == "REFRESH_INVALID"


def test_logout_clears_the_cookie_and_revokes(internal: testing.TestClient, cc_login) -> None:
    _, token, cookie = cc_login()
    result = internal.simulate_post("/internal/auth/logout", headers=bearer(token))
    assert result.status_code == 204
    assert result.cookies["cc_refresh_token"].value == ""
    assert internal.simulate_get("/internal/auth/me", headers=bearer(token)).status_code == 401
    refresh = internal.simulate_post(
        "/internal/auth/refresh", headers={"Origin": CC_ORIGIN, "Cookie": f"cc_refresh_token={cookie}"}
    )
    assert refresh.status_code == 401


def test_password_rules(internal: testing.TestClient, cc_login) -> None:
    _, token, _ = cc_login()
    wrong = internal.simulate_post(
        "/internal/auth/password",
        headers=bearer(token),
        json={"current_password": "nope nope nope", "new_password": "x" * 20},
    )
    assert wrong.status_code == 401
    for bad, why in [("short", "at least 12"), ("x" * 73, "72 bytes"), ("é" * 37, "72 bytes")]:
        result = internal.simulate_post(
            "/internal/auth/password",
            headers=bearer(token),
            json={"current_password": CC_PASSWORD, "new_password": bad},
        )
        assert result.status_code == 422
        assert why in str(result.json["error"]["details"]["fields"]["new_password"])


def test_long_password_login_is_refused_not_truncated(
    internal: testing.TestClient, services: Services, make_cc_user
) -> None:
    user = make_cc_user()
    assert _login(internal, user["email"], CC_PASSWORD + "x" * 80).status_code == 401


def _bcrypt_cost(password_hash: bytes | str) -> int:
    raw = password_hash.encode() if isinstance(password_hash, str) else password_hash
    return int(raw.split(b"$")[2])


def test_unknown_and_known_emails_cost_the_same_bcrypt_work(
    internal: testing.TestClient, make_cc_user, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The login answers an unknown e-mail only after a check as expensive as a real one: the same
    bcrypt cost (timing would otherwise tell which e-mails have accounts)."""
    checked: list[int] = []
    real_checkpw = bcrypt.checkpw

    def counting_checkpw(password: bytes, hashed: bytes) -> bool:
        checked.append(_bcrypt_cost(hashed))
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting_checkpw)
    user = make_cc_user()
    assert _login(internal, user["email"], "not the password at all").status_code == 401
    assert _login(internal, "nobody@halobestie.test", "not the password at all").status_code == 401
    assert _login(internal, "nobody@halobestie.test", "x" * 100).status_code == 401  # over 72 bytes
    assert _login(internal, user["email"], "x" * 100).status_code == 401
    assert checked == [BCRYPT_COST] * 4
    assert _bcrypt_cost(hash_password("a real password here")) == BCRYPT_COST


def test_password_change_attempts_are_limited_per_user(
    internal: testing.TestClient, services: Services, cc_login
) -> None:
    limit = services.settings.password_change_attempts
    _, token, _ = cc_login()
    _, other, _ = cc_login()

    def change(access: str, current: str) -> testing.Result:
        return internal.simulate_post(
            "/internal/auth/password",
            headers=bearer(access),
            json={"current_password": current, "new_password": "a brand new password"},
        )

    for _ in range(limit):
        assert change(token, "a wrong guess here").status_code == 401
    refused = change(token, CC_PASSWORD)  # even the right password: the window is spent
    assert refused.status_code == 429, refused.text
    assert refused.json["error"]["code"] == "RATE_LIMITED"
    assert 0 < int(refused.headers["Retry-After"]) <= 15 * 60 + 1
    assert change(other, CC_PASSWORD).status_code == 204  # another user's attempts are their own
