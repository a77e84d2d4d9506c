"""Refresh rotation: one successor under concurrency, the 10 s grace, reuse revokes, expiry is not reuse."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import bcrypt
from falcon import testing

from lib.services import Services
from tests.conftest import bearer

REFRESH = "/api/shared/auth/refresh"


def _refresh(public: testing.TestClient, token: str) -> testing.Result:
    return public.simulate_post(REFRESH, json={"refresh_token": token})


def _session(services: Services, session_id: str) -> dict[str, Any]:
    row = services.db.fetch_one("SELECT * FROM auth_sessions WHERE id = %(id)s", {"id": session_id})
    assert row is not None
    return row


def _sid(public: testing.TestClient, access: str) -> str:
    import jwt

    return str(jwt.decode(access, options={"verify_signature": False})["session_id"])


def test_rotation_keeps_the_session(public: testing.TestClient, anonymous) -> None:
    first = anonymous()
    result = _refresh(public, first["refresh_token"])
    assert result.status_code == 200
    second = result.json["data"]
    assert set(second) >= {
        "access_token",
        "access_token_expires_at",
        "refresh_token",
        "refresh_token_expires_at",
        "token_type",
        "user_type",
        "user",
    }
    assert second["token_type"] == "Bearer"
    assert second["user_type"] == "customer"
    assert second["refresh_token"] != first["refresh_token"]
    assert _sid(public, second["access_token"]) == _sid(public, first["access_token"])
    assert second["refresh_token_expires_at"] == first["refresh_token_expires_at"]  # absolute 30 days
    assert _refresh(public, second["refresh_token"]).status_code == 200


def test_refresh_tokens_are_long_random_and_stored_hashed(services: Services, anonymous) -> None:
    pair = anonymous()
    selector, verifier = pair["refresh_token"].split(".")
    assert len(verifier) == 43  # 256 bits, base64url
    row = services.db.fetch_one("SELECT * FROM auth_refresh_tokens WHERE selector = %(s)s", {"s": selector})
    assert row is not None
    assert verifier not in row["token_hash"]
    assert row["token_hash"].startswith("$2b$")
    assert bcrypt.checkpw(verifier.encode(), row["token_hash"].encode())


def test_twenty_concurrent_refreshes_get_one_successor(
    public: testing.TestClient,
    services: Services,
    anonymous,
) -> None:
    pair = anonymous()
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda _: _refresh(public, pair["refresh_token"]), range(20)))
    ok = [r for r in results if r.status_code == 200]
    assert ok, [r.text for r in results]
    assert all(r.status_code in (200, 401) for r in results)
    successors = {r.json["data"]["refresh_token"] for r in ok}
    assert len(successors) == 1
    assert len(ok) == 20  # all within the grace window, so every caller gets the same successor
    sid = _sid(public, pair["access_token"])
    assert _session(services, sid)["current_generation"] == 1
    count = services.db.fetch_one("SELECT count(*) AS n FROM auth_refresh_tokens WHERE session_id = %(s)s", {"s": sid})
    assert count == {"n": 2}
    assert _refresh(public, successors.pop()).status_code == 200


def test_lost_response_retry_within_grace_returns_same_successor(
    public: testing.TestClient,
    services: Services,
    anonymous,
) -> None:
    pair = anonymous()
    first = _refresh(public, pair["refresh_token"]).json["data"]["refresh_token"]
    again = _refresh(public, pair["refresh_token"])
    assert again.status_code == 200
    assert again.json["data"]["refresh_token"] == first
    assert _session(services, _sid(public, pair["access_token"]))["current_generation"] == 1  # nothing minted


def test_predecessor_after_grace_is_reuse(public: testing.TestClient, services: Services, anonymous) -> None:
    pair = anonymous()
    sid = _sid(public, pair["access_token"])
    successor = _refresh(public, pair["refresh_token"]).json["data"]
    services.db.execute(
        "UPDATE auth_sessions SET last_rotated_at = now() - interval '11 seconds' WHERE id = %(s)s", {"s": sid}
    )
    reuse = _refresh(public, pair["refresh_token"])
    assert reuse.status_code == 401
    assert reuse.json["error"]["code"] == "REFRESH_INVALID"
    assert _session(services, sid)["revoked_reason"] == "refresh_token_reuse"
    assert _refresh(public, successor["refresh_token"]).status_code == 401  # the whole family is dead
    assert public.simulate_get("/api/client/me", headers=bearer(successor["access_token"])).status_code == 401
    event = services.db.fetch_one("SELECT * FROM security_events WHERE session_id = %(s)s", {"s": sid})
    assert event is not None
    assert event["kind"] == "refresh_token_reuse"


def test_grandparent_within_grace_is_reuse(public: testing.TestClient, services: Services, anonymous) -> None:
    pair = anonymous()
    second = _refresh(public, pair["refresh_token"]).json["data"]["refresh_token"]
    third = _refresh(public, second).json["data"]["refresh_token"]
    assert _refresh(public, pair["refresh_token"]).status_code == 401
    assert _session(services, _sid(public, pair["access_token"]))["revoked_at"] is not None
    assert _refresh(public, third).status_code == 401


def test_expiry_is_not_reuse(public: testing.TestClient, services: Services, anonymous) -> None:
    pair = anonymous()
    sid = _sid(public, pair["access_token"])
    services.db.execute(
        "UPDATE auth_sessions SET expires_at = now() - interval '1 second' WHERE id = %(s)s", {"s": sid}
    )
    result = _refresh(public, pair["refresh_token"])
    assert result.status_code == 401
    assert result.json["error"]["code"] == "REFRESH_INVALID"
    assert _session(services, sid)["revoked_at"] is None
    assert services.db.fetch_one("SELECT 1 FROM security_events WHERE session_id = %(s)s", {"s": sid}) is None


def test_forged_verifier_revokes_nothing(public: testing.TestClient, services: Services, anonymous) -> None:
    pair = anonymous()
    selector = pair["refresh_token"].split(".")[0]
    assert _refresh(public, selector + "." + "A" * 43).status_code == 401
    assert _session(services, _sid(public, pair["access_token"]))["revoked_at"] is None
    assert _refresh(public, pair["refresh_token"]).status_code == 200


def test_garbage_refresh_tokens_are_401(public: testing.TestClient) -> None:
    for token in ["", "x", "a.b", "A" * 22 + "." + "B" * 43, "\u00e9" * 30]:
        result = _refresh(public, token)
        assert result.status_code == 401, token
        assert result.json["error"]["code"] == "REFRESH_INVALID"


def test_deactivated_mitra_cannot_refresh(public: testing.TestClient, services: Services, make_mitra) -> None:
    from lib.auth.flows import sign_in

    mitra = make_mitra()
    with services.db.connection() as conn:
        grant = sign_in(conn, services.settings, "mitra", str(mitra["id"]))
    assert _refresh(public, grant.refresh_token).status_code == 200
    services.db.execute("UPDATE mitras SET is_active = false WHERE id = %(id)s", {"id": mitra["id"]})
    grant2 = None
    with services.db.connection() as conn:
        grant2 = sign_in(conn, services.settings, "mitra", str(mitra["id"]))
    result = _refresh(public, grant2.refresh_token)
    assert result.status_code == 403
    assert result.json["error"]["code"] == "ACCOUNT_INACTIVE"


def test_cc_refresh_token_is_refused_on_the_app_route(public: testing.TestClient, cc_login) -> None:
    _, _, cookie = cc_login()
    assert _refresh(public, cookie).status_code == 401
