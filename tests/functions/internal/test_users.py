"""Control-center users management."""

from __future__ import annotations

import pytest
from falcon import testing

from tests.conftest import CC_PASSWORD, bearer

LOGIN = "/internal/auth/login"


def _login(
    internal: testing.TestClient, email: str, password: str = CC_PASSWORD, ip: str = "10.1.1.1"
) -> testing.Result:
    return internal.simulate_post(LOGIN, json={"email": email, "password": password}, remote_addr=ip)


def test_users_management(internal: testing.TestClient, cc_login) -> None:
    _, admin, _ = cc_login("admin")
    created = internal.simulate_post(
        "/internal/users",
        headers=bearer(admin),
        json={
            "email": "New.Op@halobestie.test",
            "display_name": "New Op",
            "role": "operator",
            "password": "an initial password",
        },
    )
    assert created.status_code == 201, created.text
    user = created.json["data"]
    assert user["email"] == "new.op@halobestie.test"
    assert "password_hash" not in user
    dup = internal.simulate_post(
        "/internal/users",
        headers=bearer(admin),
        json={
            "email": "new.op@halobestie.test",
            "display_name": "Dup",
            "role": "operator",
            "password": "an initial password",
        },
    )
    assert dup.status_code == 409
    unknown_field = internal.simulate_post(
        "/internal/users",
        headers=bearer(admin),
        json={
            "email": "x@halobestie.test",
            "display_name": "X",
            "role": "operator",
            "password": "an initial password",
            "is_superuser": True,
        },
    )
    assert unknown_field.status_code == 422
    listed = internal.simulate_get("/internal/users", headers=bearer(admin), params={"limit": 1})
    assert listed.json["data"]["has_more"] is True
    assert len(listed.json["data"]["items"]) == 1
    page2 = internal.simulate_get(
        "/internal/users", headers=bearer(admin), params={"limit": 1, "cursor": listed.json["data"]["next_cursor"]}
    )
    assert page2.json["data"]["items"][0]["id"] != listed.json["data"]["items"][0]["id"]
    got = internal.simulate_get(f"/internal/users/{user['id']}", headers=bearer(admin))
    assert got.json["data"]["display_name"] == "New Op"
    patched = internal.simulate_patch(f"/internal/users/{user['id']}", headers=bearer(admin), json={"role": "admin"})
    assert patched.json["data"]["role"] == "admin"
    reset = internal.simulate_post(
        f"/internal/users/{user['id']}/reset-password", headers=bearer(admin), json={"password": "a brand new password"}
    )
    assert reset.status_code == 204
    assert _login(internal, "new.op@halobestie.test", "a brand new password").status_code == 200
    assert (
        internal.simulate_get("/internal/users/00000000-0000-4000-8000-000000000000", headers=bearer(admin)).status_code
        == 404
    )


def test_admin_cannot_lock_themselves_out(internal: testing.TestClient, cc_login) -> None:
    me, admin, _ = cc_login("admin")
    result = internal.simulate_patch(f"/internal/users/{me['id']}", headers=bearer(admin), json={"is_active": False})
    assert result.status_code == 409


@pytest.mark.parametrize("limit", ["0", "-5", "1000"])
def test_limit_is_clamped(internal: testing.TestClient, cc_login, limit: str) -> None:
    _, admin, _ = cc_login("admin")
    assert internal.simulate_get("/internal/users", headers=bearer(admin), params={"limit": limit}).status_code == 200
