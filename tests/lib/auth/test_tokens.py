"""Access tokens: HS256 only, required claims, audiences per surface, who may call what."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from falcon import testing

from lib.auth.tokens import APP_AUDIENCE, CC_AUDIENCE, ISSUER, issue_access_token
from tests.conftest import TEST_SECRET, bearer


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": "00000000-0000-0000-0000-000000000001",
        "user_type": "customer",
        "session_id": "00000000-0000-0000-0000-0000000000aa",
        "iat": now,
        "exp": now + 600,
        "iss": ISSUER,
        "aud": APP_AUDIENCE,
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _status(public: testing.TestClient, token: str) -> int:
    return public.simulate_get("/api/client/me", headers=bearer(token)).status_code


def test_valid_token_works(public: testing.TestClient, anonymous) -> None:
    pair = anonymous("Ayu")
    result = public.simulate_get("/api/client/me", headers=bearer(pair["access_token"]))
    assert result.status_code == 200
    assert result.json["data"]["call_name"] == "Ayu"
    claims = jwt.decode(pair["access_token"], TEST_SECRET, algorithms=["HS256"], audience=APP_AUDIENCE)
    assert {"sub", "user_type", "session_id", "iat", "exp", "iss", "aud"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 3600


def test_no_token_is_401(public: testing.TestClient) -> None:
    result = public.simulate_get("/api/client/me")
    assert result.status_code == 401
    assert result.json["error"]["code"] == "UNAUTHORIZED"


@pytest.mark.parametrize("header", ["Token abc", "Bearer", "Basic dXNlcjpwYXNz"])
def test_malformed_authorization_is_401(public: testing.TestClient, header: str) -> None:
    assert public.simulate_get("/api/client/me", headers={"Authorization": header}).status_code == 401


def test_alg_none_is_refused(public: testing.TestClient) -> None:
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}."
    assert _status(public, token) == 401


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_other_hmac_algorithms_are_refused(public: testing.TestClient, alg: str) -> None:
    assert _status(public, jwt.encode(_claims(), TEST_SECRET, algorithm=alg)) == 401


def test_rs256_token_is_refused(public: testing.TestClient) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert _status(public, jwt.encode(_claims(), key, algorithm="RS256")) == 401


def test_wrong_secret_is_refused(public: testing.TestClient) -> None:
    assert _status(public, jwt.encode(_claims(), "another-secret-that-is-long-enough-xyz", algorithm="HS256")) == 401


@pytest.mark.parametrize("header", [{"kid": "1"}, {"jku": "https://evil.example/keys"}, {"jwk": {"k": "x"}}])
def test_key_headers_are_refused(public: testing.TestClient, header: dict[str, Any]) -> None:
    assert _status(public, jwt.encode(_claims(), TEST_SECRET, algorithm="HS256", headers=header)) == 401


def test_expired_token_is_refused(public: testing.TestClient) -> None:
    now = int(time.time())
    assert _status(public, jwt.encode(_claims(iat=now - 700, exp=now - 60), TEST_SECRET, algorithm="HS256")) == 401


@pytest.mark.parametrize("missing", ["sub", "user_type", "session_id", "iat", "exp", "iss", "aud"])
def test_missing_claims_are_refused(public: testing.TestClient, missing: str) -> None:
    claims = _claims()
    del claims[missing]
    assert _status(public, jwt.encode(claims, TEST_SECRET, algorithm="HS256")) == 401


@pytest.mark.parametrize(("claim", "value"), [("iss", "someone-else"), ("aud", CC_AUDIENCE), ("user_type", "admin")])
def test_wrong_claim_values_are_refused(public: testing.TestClient, claim: str, value: str) -> None:
    assert _status(public, jwt.encode(_claims(**{claim: value}), TEST_SECRET, algorithm="HS256")) == 401


def test_cc_token_is_refused_on_public_and_app_token_on_internal(
    public: testing.TestClient,
    internal: testing.TestClient,
    anonymous,
    cc_login,
) -> None:
    _, cc_token, _ = cc_login("admin")
    app_token = anonymous()["access_token"]
    assert public.simulate_get("/api/client/me", headers=bearer(cc_token)).status_code == 401
    assert internal.simulate_get("/internal/auth/me", headers=bearer(app_token)).status_code == 401
    assert internal.simulate_get("/internal/auth/me", headers=bearer(cc_token)).status_code == 200


def test_wrong_kind_of_user_is_403(public: testing.TestClient, services, make_mitra) -> None:
    mitra = make_mitra()
    token, _ = issue_access_token(
        TEST_SECRET,
        user_type="mitra",
        user_id=str(mitra["id"]),
        session_id="00000000-0000-0000-0000-0000000000bb",
        ttl_seconds=600,
    )
    result = public.simulate_get("/api/client/me", headers=bearer(token))
    assert result.status_code == 403
    assert result.json["error"]["code"] == "FORBIDDEN"


def test_operator_lacks_admin_permissions(internal: testing.TestClient, cc_login) -> None:
    _, operator, _ = cc_login("operator")
    _, admin, _ = cc_login("admin")
    assert internal.simulate_get("/internal/users", headers=bearer(operator)).status_code == 403
    assert internal.simulate_get("/internal/users", headers=bearer(admin)).status_code == 200
    assert internal.simulate_get("/internal/otp-bypass", headers=bearer(operator)).status_code == 403


def test_cached_token_still_honours_expiry(public: testing.TestClient, services, anonymous) -> None:
    pair = anonymous()
    claims = jwt.decode(pair["access_token"], TEST_SECRET, algorithms=["HS256"], audience=APP_AUDIENCE)
    now = int(time.time())
    short = jwt.encode({**claims, "iat": now - 10, "exp": now + 1}, TEST_SECRET, algorithm="HS256")
    assert _status(public, short) == 200  # now cached
    time.sleep(2.5)
    assert _status(public, short) == 401
