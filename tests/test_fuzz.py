"""SECURITY.md item 17: bad input never yields a 500. Schemathesis fuzzes every operation of both
listeners from their OpenAPI descriptions, against real PostgreSQL and Valkey, with valid tokens.
Then the hostile values generators rarely produce (issue 22: NUL, lone surrogates, non-ASCII digits,
huge numbers, deep nesting, surrogate field names, forged cursors) go to every body field, query
parameter and list of the same documents: never a 5xx, every 4xx the error envelope with its
X-Request-Id, and what the input rules refuse (lib/inputs.py) never accepted."""

from __future__ import annotations

import base64
import json
import uuid
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


def _lift_ip_limits(services: Services) -> None:
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


def _schema(surface: str, services: Services) -> Any:
    _lift_ip_limits(services)
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
    assert spec["openapi"].startswith("3.")
    assert "/api/client/payment-requests" in spec["paths"]
    internal_spec = internal.simulate_get("/internal/openapi.json").json
    assert "/internal/config" in internal_spec["paths"]
    assert "/api/client/me" not in internal_spec["paths"]
    page = internal.simulate_get("/internal/docs")
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert public.simulate_get("/internal/openapi.json").status_code == 404


# Hostile values the generators rarely produce, sent to every field of every JSON body and every
# query parameter of both listeners. Routes come from the OpenAPI documents, so a new route is
# covered the day it is added. Each value is raw JSON text (for a body) and a raw, percent-encoded
# query value; `refused` says whether the one input rule set (lib/inputs.py) must answer it with a
# 4xx wherever it is sent (text PostgreSQL or UTF-8 cannot store, numbers beyond 64 bits or beyond
# the parser, nesting beyond 32 levels), rather than only never with a 5xx.
HOSTILE: list[tuple[str, str, str, bool]] = [
    # (name, JSON text, query value, refused)
    ("nul", '"a\\u0000b"', "a%00b", True),
    ("lone surrogate", '"\\ud800"', "%ED%A0%80", True),
    ("superscript two", '"²"', "%C2%B2", False),
    ("arabic-indic three", '"٣"', "%D9%A3", False),
    ("5,000 digits", "9" * 5000, "9" * 5000, True),
    ("10^20", str(10**20), str(10**20), True),
    ("spaces", '"' + " " * 20 + '"', "%20" * 20, False),
    ("1,100 nested lists", "[" * 1100 + "]" * 1100, "%5B" * 1100 + "%5D" * 1100, True),
]
# In a query string every value is text: only what cannot be stored must be refused there (a NUL;
# the bytes of a lone surrogate are decoded with replacement characters), and a non-ASCII digit
# where a number is expected (docs/limits.md).
QUERY_REFUSED = {"nul"}
NON_ASCII_DIGITS = {"superscript two", "arabic-indic three"}
SURROGATE_NAME_JSON = '"\\ud800x"'  # an unknown field whose NAME holds a lone surrogate
SURROGATE_NAME_QUERY = "%ED%A0%80x"
PLACEHOLDER = "\x01hostile\x01"


def _b64(raw: bytes | str) -> str:
    return base64.urlsafe_b64encode(raw.encode() if isinstance(raw, str) else raw).decode().rstrip("=")


# Forged cursors for every list route: (name, cursor, refused). A cursor is opaque base64 JSON of
# the last row's sort keys; a forged one is a 422, never a 500. The last two are well-formed keys
# at the edges of their types: they must not be a 5xx, whatever the answer.
FORGED_CURSORS: list[tuple[str, str, bool]] = [
    ("1,100 nested [", _b64("[" * 1100), True),
    ("1,100 nested [ ]", _b64("[" * 1100 + "]" * 1100), True),
    ("300 nested [ ] (under the size bound)", _b64("[" * 300 + "]" * 300), True),
    ("[10^20]", _b64(f"[{10**20}]"), True),
    ("[10^20, 10^20]", _b64(f"[{10**20}, {10**20}]"), True),
    ("[time, 10^20]", _b64(f'["2026-01-01T00:00:00+00:00", {10**20}]'), True),
    ("[digit string, uuid]", _b64(f'["{10**20}", "{uuid.UUID(int=1)}"]'), True),
    ("[nul, nul]", _b64('["\\u0000", "\\u0000"]'), True),
    ("[surrogate, surrogate]", _b64('["\\ud800", "\\ud800"]'), True),
    ("[null, null]", _b64("[null, null]"), True),
    ("object", _b64('{"a": 1}'), True),
    ("garbage bytes", _b64(bytes(range(256))), True),
    ("garbage text", "%21%21not-base64%21%21", True),
    ("5,000 digits", _b64("9" * 5000), True),
    ("[max time, max bigint]", _b64('["9999-12-31T23:59:59.999999+00:00", 9223372036854775807]'), False),
    ("[min time, min bigint]", _b64('["0001-01-01T00:00:00+14:00", -9223372036854775808]'), False),
]


def _example(schema: dict[str, Any], name: str) -> Any:
    """A plausible value for one field, so that the hostile one sent beside it is what is judged."""
    enum = [v for v in schema.get("enum", []) if v is not None]
    if enum:
        return enum[0]
    kind, fmt = schema.get("type"), schema.get("format")
    if kind == "boolean":
        return False
    if kind == "integer":
        return max(1, int(schema.get("minimum", 1)))
    if kind != "string":
        return None
    if fmt == "uuid":
        return str(uuid.uuid4())
    if fmt == "date-time":
        return "2030-01-01T00:00:00+00:00"
    if fmt == "email" or name == "email":
        return f"fuzz-{uuid.uuid4().hex[:8]}@halobestie.test"
    if "phone" in name:
        return "+6281299990099"
    if schema.get("pattern") == "^[0-9]{6}$":
        return "123456"
    return "fuzz".ljust(int(schema.get("minLength", 1)), "z")


def _operations(surface: str, services: Services) -> list[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path template, operation) of every route the listener mounts, from its OpenAPI document."""
    document = openapi_document(surface, settings=services.settings)
    return [
        (method.upper(), path, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict) and "responses" in operation
    ]


def _path(template: str, operation: dict[str, Any], ids: dict[str, str]) -> str:
    path = template
    for param in operation.get("parameters", []):
        if param["in"] == "path":
            value = ids.get(param["name"]) or ("1" if param["schema"].get("type") == "integer" else str(uuid.uuid4()))
            path = path.replace("{" + param["name"] + "}", value)
    return path


def _judge(result: Any, case: str, must_refuse: bool) -> str | None:
    """None when the answer holds the properties, else a line naming the case and the answer."""
    status = result.status_code
    problem = None
    if status >= 500:
        problem = "a 5xx"
    elif must_refuse and status < 400:
        problem = "accepted"
    elif status >= 400:
        try:
            body = json.loads(result.content or b"")
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if not (
            isinstance(body, dict)
            and body.get("success") is False
            and isinstance(error, dict)
            and isinstance(error.get("code"), str)
            and isinstance(error.get("message"), str)
            and "details" in error
        ):
            problem = "no error envelope"
        elif not result.headers.get("X-Request-Id"):
            problem = "no X-Request-Id"
    return f"{case} -> {status} ({problem}): {result.text[:300]!r}" if problem else None


class _Hostile:
    """Sends hostile input to every body field and query parameter of one listener."""

    def __init__(self, client: testing.TestClient, headers_for: Any, ids: dict[str, str]) -> None:
        self.client, self.headers_for, self.ids = client, headers_for, ids
        self.failures: list[str] = []
        self.sent = 0

    def send(self, method: str, path: str, case: str, must_refuse: bool, body: str | None = None, query: str = ""):
        headers = self.headers_for(path)
        if body is not None:
            headers = {**headers, "Content-Type": "application/json"}
        where = f"{method} {path}{'?' + query[:80] if query else ''} [{case}]"
        self.sent += 1
        try:
            result = self.client.simulate_request(
                method, path, body=body.encode() if body is not None else None, headers=headers, query_string=query
            )
        except Exception as exc:  # escaped every error handler: a server would answer a bare 500
            self.failures.append(f"{where} -> raised {type(exc).__name__}: {exc!s:.200}")
            return
        failure = _judge(result, where, must_refuse)
        if failure:
            self.failures.append(failure)

    def bodies(self, operations: list[tuple[str, str, dict[str, Any]]]) -> None:
        for method, template, operation in operations:
            content = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if content is None:
                continue
            schema = content["schema"]
            properties = schema.get("properties") or {"payload": {}}  # a free-form body (the webhook)
            base = {name: _example(spec, name) for name, spec in properties.items()}
            path = _path(template, operation, self.ids)
            for field in properties:
                for name, raw, _query, refused in HOSTILE:
                    text = json.dumps({**base, field: PLACEHOLDER}, ensure_ascii=False)
                    text = text.replace(json.dumps(PLACEHOLDER, ensure_ascii=False), raw)
                    self.send(method, path, f"{field}={name}", refused, body=text)
            unknown = json.dumps(base, ensure_ascii=False)[:-1] + (", " if base else "") + SURROGATE_NAME_JSON + ": 1}"
            self.send(method, path, "unknown field named with a lone surrogate", True, body=unknown)

    def queries(self, operations: list[tuple[str, str, dict[str, Any]]]) -> None:
        for method, template, operation in operations:
            params = [p for p in operation.get("parameters", []) if p["in"] == "query"]
            if not params:
                continue
            path = _path(template, operation, self.ids)
            for param in params:
                numeric = param["schema"].get("type") == "integer"
                for name, _raw, value, _refused in HOSTILE:
                    refused = name in QUERY_REFUSED or (numeric and name in NON_ASCII_DIGITS)
                    self.send(method, path, f"{param['name']}={name}", refused, query=f"{param['name']}={value}")
            # Falcon decodes a query string's bytes as UTF-8 with replacement: no surrogate survives.
            self.send(
                method, path, "unknown parameter named with a lone surrogate", False, query=SURROGATE_NAME_QUERY + "=1"
            )

    def cursors(self, operations: list[tuple[str, str, dict[str, Any]]]) -> int:
        lists = 0
        for method, template, operation in operations:
            if not any(p["in"] == "query" and p["name"] == "cursor" for p in operation.get("parameters", [])):
                continue
            lists += 1
            path = _path(template, operation, self.ids)
            for name, cursor, refused in FORGED_CURSORS:
                self.send(method, path, f"cursor={name}", refused, query=f"cursor={cursor}")
        return lists


@pytest.fixture
def hostile(
    public: testing.TestClient,
    internal: testing.TestClient,
    services: Services,
    app_headers: dict[str, dict[str, str]],
    cc_login,
    anonymous,
    make_mitra,
):
    """hostile(surface) -> (a _Hostile for that listener, its operations). Path ids of `customer_id`
    and `mitra_id` name rows other than the callers', so a hostile value that passes reaches a real
    row without ending the sessions the other cases use; other path ids are random (a 404, after
    validation)."""
    _lift_ip_limits(services)
    ids = {"customer_id": anonymous()["user"]["id"], "mitra_id": str(make_mitra("+6281299990098", "Sasaran")["id"])}
    admin = bearer(cc_login("admin")[1])

    def app_user(path: str) -> dict[str, str]:
        return app_headers["mitra" if path.startswith("/api/mitra/") else "customer"]

    def make(surface: str) -> tuple[_Hostile, list[tuple[str, str, dict[str, Any]]]]:
        client, headers_for = (public, app_user) if surface == "public" else (internal, lambda path: admin)
        return _Hostile(client, headers_for, ids), _operations(surface, services)

    return make


@pytest.mark.parametrize("surface", ["public", "internal"])
def test_hostile_values_in_every_field_and_parameter(hostile, surface: str) -> None:
    sender, operations = hostile(surface)
    sender.bodies(operations)
    sender.queries(operations)
    assert not sender.failures, "\n".join(sender.failures)
    assert sender.sent > 300  # the document's routes were found and every field was sent to


def test_forged_cursors_on_every_list(hostile) -> None:
    failures, lists = [], 0
    for surface in ("public", "internal"):
        sender, operations = hostile(surface)
        lists += sender.cursors(operations)
        failures += sender.failures
    assert not failures, "\n".join(failures)
    assert lists >= 20  # every list route of both listeners
