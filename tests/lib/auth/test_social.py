"""Google and Apple sign-in against a local JWKS server with test keys."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import jwt
import pytest
from falcon import testing

from lib.auth.social import (
    JWKS_TTL_SECONDS,
    REFETCH_MIN_SECONDS,
    STALE_MAX_SECONDS,
    IdTokenInvalid,
    JwksCache,
    verify_google,
)
from lib.config.env import Settings
from runtime.app import create_app
from runtime.container import build_services
from tests.conftest import TEST_SECRET, bearer
from tests.fakes import JwksServer

GOOGLE_CLIENT = "google-client.apps.example"
APPLE_CLIENT = "id.halobestie.app"


@pytest.fixture
def google() -> Iterator[JwksServer]:
    server = JwksServer()
    server.add_key("g1")
    with server.running():
        yield server


@pytest.fixture
def apple() -> Iterator[JwksServer]:
    server = JwksServer()
    server.add_key("a1")
    with server.running():
        yield server


@pytest.fixture
def social(settings: Settings, google: JwksServer, apple: JwksServer) -> Iterator[testing.TestClient]:
    configured = replace(
        settings,
        google_client_ids=(GOOGLE_CLIENT,),
        apple_client_ids=(APPLE_CLIENT,),
        google_jwks_url=google.url,
        apple_jwks_url=apple.url,
    )
    svc = build_services(configured)
    yield testing.TestClient(create_app("public", svc))
    svc.close()


def _google_claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": "https://accounts.google.com",
        "aud": GOOGLE_CLIENT,
        "sub": "g-123",
        "iat": now,
        "exp": now + 600,
        "email": "Ayu@Example.com",
        "email_verified": True,
        **over,
    }


def _apple_claims(nonce: str = "raw-nonce", **over: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": "https://appleid.apple.com",
        "aud": APPLE_CLIENT,
        "sub": "a-456",
        "iat": now,
        "exp": now + 600,
        "nonce": hashlib.sha256(nonce.encode()).hexdigest(),
        **over,
    }


def _google(client: testing.TestClient, token: str, access: str | None = None) -> testing.Result:
    return client.simulate_post(
        "/api/client/auth/google", json={"id_token": token}, headers=bearer(access) if access else {}
    )


def test_google_sign_in_creates_then_logs_in(social: testing.TestClient, google: JwksServer) -> None:
    first = _google(social, google.sign(_google_claims(), "g1"))
    assert first.status_code == 200, first.text
    user = first.json["data"]["user"]
    assert user["is_anonymous"] is False
    assert user["email"] == "ayu@example.com"
    again = _google(social, google.sign(_google_claims(), "g1"))
    assert again.json["data"]["user"]["id"] == user["id"]


def test_unverified_email_is_not_used(social: testing.TestClient, google: JwksServer) -> None:
    result = _google(social, google.sign(_google_claims(sub="g-777", email_verified=False), "g1"))
    assert result.status_code == 200
    assert result.json["data"]["user"]["email"] is None


def test_anonymous_upgrade_keeps_the_id(social: testing.TestClient, google: JwksServer) -> None:
    anon = social.simulate_post("/api/shared/auth/anonymous", json={}).json["data"]
    result = _google(social, google.sign(_google_claims(sub="g-new"), "g1"), anon["access_token"])
    assert result.json["data"]["user"]["id"] == anon["user"]["id"]
    assert result.json["data"]["user"]["is_anonymous"] is False


@pytest.mark.parametrize(
    "over",
    [
        {"aud": "someone-else"},
        {"iss": "https://evil.example"},
        {"exp": int(time.time()) - 120},
        {"sub": ""},
    ],
)
def test_bad_google_claims_are_401(social: testing.TestClient, google: JwksServer, over: dict[str, Any]) -> None:
    result = _google(social, google.sign(_google_claims(**over), "g1"))
    assert result.status_code == 401
    assert result.json["error"]["code"] == "ID_TOKEN_INVALID"


def test_forged_or_confused_tokens_are_401(social: testing.TestClient, google: JwksServer) -> None:
    other = JwksServer()
    other.add_key("g1")  # same kid, different key
    assert _google(social, other.sign(_google_claims(), "g1")).status_code == 401
    hs = jwt.encode(
        _google_claims(), "shared-secret-guess-shared-secret-guess", algorithm="HS256", headers={"kid": "g1"}
    )
    assert _google(social, hs).status_code == 401
    assert _google(social, "not.a.jwt").status_code == 401


def test_unknown_kid_refetches_once(social: testing.TestClient, google: JwksServer) -> None:
    assert _google(social, google.sign(_google_claims(), "g1")).status_code == 200
    fetches = google.fetches
    google.add_key("g2")  # the provider rotates keys
    from lib.auth import social as social_module

    social_module.REFETCH_MIN_SECONDS = 0
    try:
        assert _google(social, google.sign(_google_claims(), "g2")).status_code == 200
        assert google.fetches == fetches + 1
        assert _google(social, google.sign(_google_claims(), "g2")).status_code == 200
        assert google.fetches == fetches + 1  # cached now
    finally:
        social_module.REFETCH_MIN_SECONDS = 30


def test_google_id_token_is_not_an_access_token(social: testing.TestClient, google: JwksServer) -> None:
    token = google.sign(_google_claims(), "g1")
    assert social.simulate_get("/api/client/me", headers=bearer(token)).status_code == 401


def test_apple_sign_in_checks_the_nonce(social: testing.TestClient, apple: JwksServer) -> None:
    ok = social.simulate_post(
        "/api/client/auth/apple", json={"id_token": apple.sign(_apple_claims("n-1"), "a1"), "nonce": "n-1"}
    )
    assert ok.status_code == 200, ok.text
    bad = social.simulate_post(
        "/api/client/auth/apple", json={"id_token": apple.sign(_apple_claims("n-1"), "a1"), "nonce": "n-2"}
    )
    assert bad.status_code == 401
    assert bad.json["error"]["code"] == "ID_TOKEN_INVALID"
    no_nonce = _apple_claims("n-1")
    del no_nonce["nonce"]
    missing = social.simulate_post(
        "/api/client/auth/apple", json={"id_token": apple.sign(no_nonce, "a1"), "nonce": "n-1"}
    )
    assert missing.status_code == 401


def test_apple_is_pinned_to_rs256(social: testing.TestClient, apple: JwksServer) -> None:
    token = apple.sign(_apple_claims("n"), "a1", alg="RS512")
    result = social.simulate_post("/api/client/auth/apple", json={"id_token": token, "nonce": "n"})
    assert result.status_code == 401


def test_identities_are_keyed_by_provider_and_subject(social: testing.TestClient, google, apple) -> None:
    g = _google(social, google.sign(_google_claims(sub="same-sub"), "g1")).json["data"]["user"]
    a = social.simulate_post(
        "/api/client/auth/apple", json={"id_token": apple.sign(_apple_claims("n", sub="same-sub"), "a1"), "nonce": "n"}
    ).json["data"]["user"]
    assert g["id"] != a["id"]


def test_disabled_providers(public: testing.TestClient) -> None:
    providers = public.simulate_get("/api/shared/auth-providers").json["data"]
    assert providers == {"phone": {"enabled": True}, "google": {"enabled": False}, "apple": {"enabled": False}}
    result = public.simulate_post("/api/client/auth/google", json={"id_token": "x.y.z"})
    assert result.status_code == 403
    assert result.json["error"]["code"] == "PROVIDER_DISABLED"
    result = public.simulate_post("/api/client/auth/apple", json={"id_token": "x.y.z", "nonce": "n"})
    assert result.status_code == 403


def test_keys_endpoint_down_is_401_not_500(settings: Settings) -> None:
    from tests.helpers import free_port

    svc = build_services(
        replace(settings, google_client_ids=(GOOGLE_CLIENT,), google_jwks_url=f"http://127.0.0.1:{free_port()}/keys")
    )
    try:
        client = testing.TestClient(create_app("public", svc))
        token = jwt.encode(_google_claims(), TEST_SECRET, algorithm="HS256")
        fake = JwksServer()
        fake.add_key("g1")
        result = _google(client, fake.sign(_google_claims(), "g1"))
        assert result.status_code == 401
        assert _google(client, token).status_code == 401
    finally:
        svc.close()


class GatedJwks(JwksServer):
    """The fake key endpoint, held open at will: a request that arrives waits for `gate`, so a test
    can look at what the callers do while a fetch is in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.arrived = threading.Semaphore(0)
        self.failing = False  # answer 503 (the provider is down)
        server = self
        plain = self._httpd.RequestHandlerClass

        class Gated(plain):  # type: ignore[misc,valid-type]
            def do_GET(self) -> None:
                server.arrived.release()
                server.gate.wait(10)
                if server.failing:
                    server.fetches += 1
                    self.reply(503, {"error": "unavailable"})
                    return
                super().do_GET()

        self._httpd.RequestHandlerClass = Gated


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Warm:
    """A key endpoint that has been asked once, and the cache that asked it (on a test clock)."""

    server: GatedJwks
    clock: Clock
    cache: JwksCache
    results: list[str]

    def verify(self, token: str) -> str:
        return str(verify_google(token, self.cache, (GOOGLE_CLIENT,))["sub"])

    def in_threads(self, token: str, count: int) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=lambda: self.results.append(self.verify(token)), daemon=True) for _ in range(count)
        ]
        for thread in threads:
            thread.start()
        return threads


@pytest.fixture
def warm() -> Iterator[Warm]:
    server = GatedJwks()
    server.add_key("g1")
    with server.running():
        clock = Clock()
        state = Warm(server, clock, JwksCache(server.url, clock=clock), [])
        assert state.verify(server.sign(_google_claims(), "g1")) == "g-123"
        assert server.fetches == 1
        assert server.arrived.acquire(timeout=1)
        yield state


def test_stale_keys_are_served_while_one_thread_refreshes(warm: Warm) -> None:
    token = warm.server.sign(_google_claims(), "g1")
    warm.clock.now += JWKS_TTL_SECONDS + 1  # the keys are due
    warm.server.gate.clear()
    refresher = warm.in_threads(token, 1)
    assert warm.server.arrived.acquire(timeout=5)  # one verification is fetching, held at the gate
    others = warm.in_threads(token, 20)
    for thread in others:  # ... and the others neither wait for it nor fetch themselves
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in others)
    assert warm.results == ["g-123"] * 20
    assert not warm.server.arrived.acquire(timeout=0.2)  # still the single fetch in flight
    warm.server.gate.set()
    refresher[0].join(timeout=10)
    assert warm.results == ["g-123"] * 21
    assert warm.server.fetches == 2


def test_an_unknown_kid_is_fetched_once_for_all_who_need_it(warm: Warm) -> None:
    warm.server.add_key("g2")  # the provider rotates its keys
    warm.clock.now += REFETCH_MIN_SECONDS + 1
    warm.server.gate.clear()
    threads = warm.in_threads(warm.server.sign(_google_claims(), "g2"), 10)
    assert warm.server.arrived.acquire(timeout=5)
    assert not warm.server.arrived.acquire(timeout=0.2)  # one fetch, the others wait for it
    warm.server.gate.set()
    for thread in threads:
        thread.join(timeout=10)
    assert warm.results == ["g-123"] * 10
    assert warm.server.fetches == 2
    # Right after a fetch, another unknown kid is refused without asking the provider again.
    stranger = JwksServer()
    stranger.add_key("g3")
    with pytest.raises(IdTokenInvalid):
        warm.verify(stranger.sign(_google_claims(), "g3"))
    assert warm.server.fetches == 2


def test_a_failed_refresh_keeps_the_old_keys_and_is_not_retried_at_once(warm: Warm) -> None:
    token = warm.server.sign(_google_claims(), "g1")
    warm.server.failing = True
    warm.clock.now += JWKS_TTL_SECONDS + 1
    assert warm.verify(token) == "g-123"  # the refresh failed: the old keys still serve
    assert warm.server.fetches == 2
    assert warm.verify(token) == "g-123"
    assert warm.server.fetches == 2  # no new try within the pause
    warm.clock.now += REFETCH_MIN_SECONDS + 1
    assert warm.verify(token) == "g-123"
    assert warm.server.fetches == 3
    warm.clock.now += STALE_MAX_SECONDS  # a day without the provider: its old keys are not trusted
    with pytest.raises(IdTokenInvalid):
        warm.verify(token)
    warm.server.failing = False
    warm.clock.now += REFETCH_MIN_SECONDS + 1
    assert warm.verify(token) == "g-123"  # back
