"""The OpenAPI documents and the docs page on the internal listener."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from falcon import testing
from openapi_spec_validator import validate

from lib import metrics
from lib.config.env import Settings
from runtime.app import SURFACES, openapi_document, routes_for
from runtime.openapi import build_spec, release
from runtime.router import discover

ROOT = Path(__file__).resolve().parents[2]


def test_the_documents_describe_each_listener(internal: testing.TestClient) -> None:
    public = internal.simulate_get("/internal/openapi.json", params={"surface": "public"})
    assert public.status_code == 200
    assert public.json["openapi"].startswith("3.")
    assert "/api/client/me" in public.json["paths"]
    assert "/internal/users" not in public.json["paths"]
    own = internal.simulate_get("/internal/openapi.json").json
    assert "/internal/openapi.json" in own["paths"]
    assert "/internal/_test/payments/{request_id}/confirm" in own["paths"]
    listing = own["paths"]["/internal/users"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert listing["properties"]["data"]["required"] == ["items", "next_cursor", "has_more"]
    page = internal.simulate_get("/internal/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")


def test_development_hooks_are_not_documented_in_production(settings: Settings) -> None:
    prod = replace(settings, app_env="production")
    assert "/internal/_test/payments/{request_id}/confirm" not in openapi_document("internal", settings=prod)["paths"]


REGENERATE = "python -m runtime openapi --surface {0} --release --out openapi.{0}.json"


def committed(surface: str) -> dict[str, Any]:
    """What `REGENERATE` writes: the production listener's routes, versioned with the release."""
    routes = [r for r in routes_for(surface) if not r.endpoint.dev_only]
    return build_spec(surface, routes, version=release())


@pytest.mark.parametrize("surface", SURFACES)
def test_the_committed_descriptions_are_current(surface: str) -> None:
    path = ROOT / f"openapi.{surface}.json"
    fresh = json.loads(json.dumps(committed(surface)))  # the file holds JSON: tuples become lists
    stored = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    assert stored == fresh, f"{path.name} is out of date; regenerate it: {REGENERATE.format(surface)}"


@pytest.mark.parametrize("surface", SURFACES)
def test_the_descriptions_are_valid_openapi(surface: str) -> None:
    validate(openapi_document(surface))
    assert openapi_document(surface)["info"]["version"] == metrics.version()  # the build's


def test_every_endpoint_declares_its_response() -> None:
    for route in discover():
        ep = route.endpoint
        hint = route.handle.__annotations__.get("return")
        returns = hint if isinstance(hint, str) else getattr(hint, "__name__", str(hint))
        if ep.status == 204:
            assert ep.response is None, route.module
            assert returns in ("None", "Reply"), route.module
        else:
            assert ep.response is not None, f"{route.module}: declare response= (the shape of `data`)"
            assert returns != "None", f"{route.module} answers 204: declare status=204"


def test_required_bodies_are_required() -> None:
    paths = openapi_document("public")["paths"]
    assert paths["/api/client/payment-requests"]["post"]["requestBody"]["required"] is True
    assert paths["/api/shared/auth/anonymous"]["post"]["requestBody"]["required"] is False  # all optional


def untyped(schema: Any, where: str, components: dict[str, Any] | None = None) -> list[str]:
    """Where a schema leaves a client an untyped value: `{}`, or an object with neither properties
    nor a declared map (`additionalProperties`). A `$ref` is followed into `components` once."""
    if not isinstance(schema, dict):
        return []
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        seen = components if components is not None else {}
        return [] if name not in seen else untyped(seen.pop(name), f"{where}<{name}>", seen)
    found = []
    parts = [k for k in ("allOf", "anyOf", "oneOf") if k in schema]
    if not schema or (not parts and "type" not in schema):
        return [where]
    if schema.get("type") == "object" and "properties" not in schema and "additionalProperties" not in schema:
        found.append(where)
    for name, prop in schema.get("properties", {}).items():
        found += untyped(prop, f"{where}.{name}", components)
    if isinstance(schema.get("additionalProperties"), dict) and schema["additionalProperties"]:
        found += untyped(schema["additionalProperties"], f"{where}.*", components)
    if "items" in schema:
        found += untyped(schema["items"], f"{where}[]", components)
    for key in parts:
        for n, sub in enumerate(schema[key]):
            found += untyped(sub, f"{where}.{key}[{n}]", components)
    return found


def test_untyped_finds_what_a_client_generator_cannot_type() -> None:
    assert untyped({}, "data") == ["data"]
    assert untyped({"type": "object"}, "data") == ["data"]
    assert untyped({"type": "array", "items": {"type": "object", "properties": {"a": {}}}}, "data") == ["data[].a"]
    assert untyped({"type": "object", "additionalProperties": {"type": "string"}}, "data") == []
    assert untyped({"$ref": "#/components/schemas/A"}, "data", {"A": {"type": "object"}}) == ["data<A>"]


def test_the_public_description_has_no_untyped_response() -> None:
    """A Dart client is generated from it: every success that carries a document types it all."""
    found = []
    document = openapi_document("public")
    components = dict(document["components"]["schemas"])  # each is checked once, where first used
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            for status, response in op["responses"].items():
                if status == "default" or status == "204":
                    continue
                assert "content" in response, f"{method.upper()} {path} {status} has no body described"
                schema = response["content"]["application/json"]["schema"]
                found += untyped(schema, f"{method.upper()} {path} {status}", components)
    assert found == []
    assert components == {}, f"components no response uses: {sorted(components)}"
