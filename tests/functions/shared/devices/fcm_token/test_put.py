"""Device tokens per user are capped (DEVICE_TOKENS_PER_USER): one more removes the oldest, and
registrations that race never leave more than the cap."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest
from falcon import testing

from lib.config.env import Settings
from lib.services import Services
from runtime.app import create_app
from runtime.container import build_services
from tests.conftest import bearer

PUT = "/api/shared/devices/fcm-token"
CAP = 3


@pytest.fixture
def capped(settings: Settings) -> Iterator[Services]:
    svc = build_services(replace(settings, device_tokens_per_user=CAP, db_pool_max=30), application_name="devices")
    yield svc
    svc.close()


@pytest.fixture
def app(capped: Services) -> testing.TestClient:
    return testing.TestClient(create_app("public", capped))


def _register(app: testing.TestClient, access: str, token: str) -> None:
    result = app.simulate_put(PUT, headers=bearer(access), json={"token": token, "platform": "android"})
    assert result.status_code == 204, result.text


def _tokens(svc: Services, user_id: str) -> set[str]:
    rows = svc.db.fetch_all("SELECT token FROM device_tokens WHERE user_id = %(u)s", {"u": user_id})
    return {row["token"] for row in rows}


def test_one_more_device_removes_the_least_recently_registered(
    app: testing.TestClient, capped: Services, anonymous
) -> None:
    me, other = anonymous(), anonymous()
    _register(app, other["access_token"], "other-phone")
    for name in ("d1", "d2", "d3"):
        _register(app, me["access_token"], name)
    _register(app, me["access_token"], "d1")  # d1 is seen again: now d2 is the oldest
    _register(app, me["access_token"], "d4")
    assert _tokens(capped, me["user"]["id"]) == {"d1", "d3", "d4"}
    _register(app, me["access_token"], "d5")
    assert _tokens(capped, me["user"]["id"]) == {"d1", "d4", "d5"}
    assert _tokens(capped, other["user"]["id"]) == {"other-phone"}  # another user's devices stay


def _register_at_once(app: testing.TestClient, access: str, tokens: list[str]) -> None:
    start = threading.Barrier(len(tokens))

    def register(token: str) -> None:
        start.wait(10)
        _register(app, access, token)

    threads = [threading.Thread(target=register, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)


def test_racing_registrations_never_exceed_the_cap(app: testing.TestClient, capped: Services, anonymous) -> None:
    me = anonymous()
    for round_ in range(3):
        _register_at_once(app, me["access_token"], [f"r{round_}-d{i}" for i in range(24)])
        left = _tokens(capped, me["user"]["id"])
        assert len(left) == CAP, left
        assert all(token.startswith(f"r{round_}-") for token in left)
