"""SECURITY.md item 17: bad input never yields a 500. Schemathesis fuzzes every operation of both
listeners from their OpenAPI descriptions, against real PostgreSQL and Valkey, with valid tokens."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from falcon import testing
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from lib.config.app import set_values
from lib.services import Services
from runtime.app import create_app, openapi_document
from tests.conftest import bearer

FUZZ = settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


def _schema(surface: str, services: Services) -> Any:
    # Generated traffic all comes from one address: lift the per-IP limits (they have their own tests).
    set_values(
        services.db,
        None,
        {
            "anonymous_signups_per_ip_per_hour": 10000,
            "otp_max_per_ip_per_hour": 10000,
            "cc_login_attempts_per_ip_per_hour": 10000,
        },
        None,
    )
    services.config.invalidate()
    schema = schemathesis.openapi.from_dict(openapi_document(surface, settings=services.settings))
    schema.app = create_app(surface, services)
    return schema


@pytest.fixture
def app_headers(anonymous, mitra_login) -> dict[str, dict[str, str]]:
    return {"customer": bearer(anonymous()["access_token"]), "mitra": bearer(mitra_login()[1])}


def _fuzz(schema: Any, headers_for: Any) -> list[str]:
    """Every operation, a dozen generated cases each (derandomized: the same cases every run)."""
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @FUZZ
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                response = case.call(headers=headers_for(case))
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
                    )

            try:
                run()
            except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
                assert mode is schemathesis.GenerationMode.NEGATIVE
    return failures


def test_public_never_500(services: Services, app_headers: dict[str, dict[str, str]], anonymous) -> None:
    def headers_for(case: Any) -> dict[str, str]:
        if case.path.endswith("/auth/logout"):  # would end the session the other operations use
            return bearer(anonymous()["access_token"])
        return app_headers["mitra" if case.path.startswith("/api/mitra/") else "customer"]

    assert _fuzz(_schema("public", services), headers_for) == []


def test_internal_never_500(services: Services, cc_login) -> None:
    admin = bearer(cc_login("admin")[1])

    def headers_for(case: Any) -> dict[str, str]:
        return bearer(cc_login("admin")[1]) if case.path.endswith("/auth/logout") else admin

    assert _fuzz(_schema("internal", services), headers_for) == []


def test_docs_are_served_on_the_internal_listener_only(
    internal: testing.TestClient, public: testing.TestClient
) -> None:
    spec = internal.simulate_get("/internal/openapi.json", params={"surface": "public"}).json
    assert spec["openapi"].startswith("3.") and "/api/client/payment-requests" in spec["paths"]
    internal_spec = internal.simulate_get("/internal/openapi.json").json
    assert "/internal/config" in internal_spec["paths"] and "/api/client/me" not in internal_spec["paths"]
    page = internal.simulate_get("/internal/docs")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert public.simulate_get("/internal/openapi.json").status_code == 404
