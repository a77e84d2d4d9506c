"""The end-to-end fixtures (/internal/_test/...) exist in development and test only: in staging and
production (the default APP_ENV) they are not routed (404), not in the OpenAPI document and not in
the mounted route table; they never reach the public listener."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields, replace

import pytest
from falcon import testing

from lib.config.env import Settings
from lib.services import Services
from lib.transcripts import KeyRing
from runtime.app import create_app, openapi_document, route_table, routes_for
from runtime.container import build_services

FIXTURES = (
    "/internal/_test/force-pairing-timeout",
    "/internal/_test/force-mitra-offline",
    "/internal/_test/force-mitra-online",
    "/internal/_test/reset-all-mitras-online",
    "/internal/_test/accept-latest-pending",
    "/internal/_test/seed-customer",
    "/internal/_test/seed-mitra",
    "/internal/_test/reset-phone",
)


@pytest.fixture(params=["development", "test", "staging", "production"])
def env_services(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Services]:
    env = request.param
    keys = "" if env in ("development", "test") else KeyRing.generate(f"{env}-1")  # required outside them
    svc = build_services(replace(settings, app_env=env, otp_allow_stub=True, chat_encryption_keys=keys))
    yield svc
    svc.close()


def test_fixtures_are_mounted_only_in_development_and_test(env_services: Services) -> None:
    mounted = env_services.settings.is_dev_or_test
    internal = testing.TestClient(create_app("internal", env_services))
    public = testing.TestClient(create_app("public", env_services))
    table = {r.endpoint.route for r in routes_for("internal", settings=env_services.settings)}
    documented = set(openapi_document("internal", settings=env_services.settings)["paths"])
    served = set(internal.simulate_get("/internal/openapi.json").json["paths"])
    for path in FIXTURES:
        assert (path in table) is mounted, path
        assert (path in documented) is mounted, path
        assert (path in served) is mounted, path
        answer = internal.simulate_post(path, json={})
        if mounted:  # routed: the fixture answers (its success, or 422 for the body it needs)
            assert answer.status_code in (200, 201, 422), (path, answer.text)
        else:
            assert answer.status_code == 404, (path, answer.text)
            assert answer.json == {
                "success": False,
                "error": {"code": "NOT_FOUND", "message": answer.json["error"]["message"], "details": {}},
            }
        assert public.simulate_post(path, json={}).status_code == 404  # never on the public listener


def test_the_default_environment_has_no_fixtures() -> None:
    """An unset APP_ENV is production: a deployment that forgets it gets no fixtures."""
    default = next(f.default for f in fields(Settings) if f.name == "app_env")
    assert default == "production"
    # The reviewed snapshot (tests/test_routes.py) lists every fixture, marked dev-only.
    snapshot = {line.split()[2]: line.split()[3] for line in route_table() if "/internal/_test/" in line}
    assert {path: snapshot.get(path) for path in FIXTURES} == dict.fromkeys(FIXTURES, "none:dev-only")
