"""The OpenAPI documents and the docs page on the internal listener."""

from __future__ import annotations

from dataclasses import replace

from falcon import testing

from lib.config.env import Settings
from runtime.app import openapi_document


def test_the_documents_describe_each_listener(internal: testing.TestClient) -> None:
    public = internal.simulate_get("/internal/openapi.json", params={"surface": "public"})
    assert public.status_code == 200 and public.json["openapi"].startswith("3.")
    assert "/api/client/me" in public.json["paths"] and "/internal/users" not in public.json["paths"]
    own = internal.simulate_get("/internal/openapi.json").json
    assert "/internal/openapi.json" in own["paths"] and "/internal/_test/payments/{request_id}/confirm" in own["paths"]
    listing = own["paths"]["/internal/users"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert listing["properties"]["data"]["required"] == ["items", "next_cursor", "has_more"]
    page = internal.simulate_get("/internal/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


def test_development_hooks_are_not_documented_in_production(settings: Settings) -> None:
    prod = replace(settings, app_env="production")
    assert "/internal/_test/payments/{request_id}/confirm" not in openapi_document("internal", settings=prod)["paths"]
