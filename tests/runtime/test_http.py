"""The request pipeline on both listeners: envelopes, status codes, body rules, request ids."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import falcon
import pytest
from falcon import testing
from marshmallow import Schema, fields

from lib.endpoint import Auth, Ctx, Endpoint, Reply
from lib.errors import Conflict
from lib.services import Services
from runtime.app import create_app
from runtime.container import build_services
from runtime.router import Route


class EchoBody(Schema):
    name = fields.String(required=True)
    count = fields.Integer(strict=True, load_default=1)


def _echo(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    return {"body": ctx.body, "params": {k: str(v) for k, v in ctx.params.items()}}


def _boom(req: falcon.Request, ctx: Ctx) -> None:
    raise RuntimeError("secret detail: password=hunter2")


def _conflict(req: falcon.Request, ctx: Ctx) -> None:
    raise Conflict("Already active", code="ALREADY_ACTIVE")


def _created(req: falcon.Request, ctx: Ctx) -> Reply:
    return Reply(201, {"id": uuid.UUID(int=1)}, headers={"Location": "/x/1"})


def _nothing(req: falcon.Request, ctx: Ctx) -> None:
    return None


def _routes(surface: str) -> list[Route]:
    prefix = "/api/shared" if surface == "public" else "/internal"
    mod = "tests.test_http"
    return [
        Route(
            surface,
            Endpoint(method="POST", route=f"{prefix}/echo/{{item_id:uuid}}", auth=Auth.NONE, body=EchoBody),
            _echo,
            mod,
        ),
        Route(surface, Endpoint(method="GET", route=f"{prefix}/boom", auth=Auth.NONE), _boom, mod),
        Route(surface, Endpoint(method="POST", route=f"{prefix}/conflict", auth=Auth.NONE), _conflict, mod),
        Route(surface, Endpoint(method="POST", route=f"{prefix}/created", auth=Auth.NONE), _created, mod),
        Route(surface, Endpoint(method="DELETE", route=f"{prefix}/created", auth=Auth.NONE), _nothing, mod),
    ]


@pytest.fixture
def pub(services: Services) -> testing.TestClient:
    return testing.TestClient(create_app("public", services, routes=_routes("public")))


@pytest.fixture
def cc(services: Services) -> testing.TestClient:
    return testing.TestClient(create_app("internal", services, routes=_routes("internal")))


ECHO = "/api/shared/echo/" + str(uuid.UUID(int=7))


def _error(result: testing.Result, status: int, code: str) -> dict[str, Any]:
    assert result.status_code == status, result.text
    body = result.json
    assert body["success"] is False
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.parametrize("client_name", ["public", "internal"])
def test_health_on_both_listeners(request: pytest.FixtureRequest, client_name: str) -> None:
    client: testing.TestClient = request.getfixturevalue(client_name)
    result = client.simulate_get("/health")
    assert result.status_code == 200
    assert result.json == {"success": True, "data": {"status": "ok"}}


@pytest.mark.parametrize("client_name", ["public", "internal"])
def test_ready_reports_database_and_valkey(request: pytest.FixtureRequest, client_name: str) -> None:
    client: testing.TestClient = request.getfixturevalue(client_name)
    result = client.simulate_get("/ready")
    assert result.status_code == 200
    assert result.json["data"] == {"status": "ready", "database": "up", "valkey": "up"}


def test_ready_valkey_down_is_still_ready(make_settings) -> None:
    from tests.helpers import free_port

    svc = build_services(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    try:
        result = testing.TestClient(create_app("public", svc)).simulate_get("/ready")
    finally:
        svc.close()
    assert result.status_code == 200
    assert result.json["data"]["valkey"] == "down"
    assert result.json["data"]["database"] == "up"


def test_ready_database_down_is_503_with_retry_after(make_settings) -> None:
    from tests.helpers import free_port

    svc = build_services(
        make_settings(database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/x", db_pool_timeout=0.5)
    )
    try:
        result = testing.TestClient(create_app("public", svc)).simulate_get("/ready")
    finally:
        svc.close()
    error = _error(result, 503, "SERVICE_UNAVAILABLE")
    assert result.headers["Retry-After"] == str(error["details"]["retry_after_seconds"])
    assert error["details"]["database"] == "down"


def test_unknown_route_is_404_envelope(pub: testing.TestClient) -> None:
    _error(pub.simulate_get("/api/shared/nothing-here"), 404, "NOT_FOUND")


def test_wrong_method_is_405_with_allow(pub: testing.TestClient) -> None:
    result = pub.simulate_put("/health")
    _error(result, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in result.headers["Allow"]


def test_surfaces_do_not_leak(pub: testing.TestClient, cc: testing.TestClient) -> None:
    _error(pub.simulate_post("/internal/created"), 404, "NOT_FOUND")
    _error(cc.simulate_post("/api/shared/created"), 404, "NOT_FOUND")
    assert pub.simulate_post("/api/shared/created").status_code == 201
    assert cc.simulate_post("/internal/created").status_code == 201


def test_success_envelope_status_and_headers(pub: testing.TestClient) -> None:
    result = pub.simulate_post("/api/shared/created")
    assert result.status_code == 201
    assert result.json == {"success": True, "data": {"id": str(uuid.UUID(int=1))}}
    assert result.headers["Location"] == "/x/1"
    deleted = pub.simulate_delete("/api/shared/created")
    assert deleted.status_code == 204
    assert deleted.text == ""


def test_valid_body_reaches_handler(pub: testing.TestClient) -> None:
    result = pub.simulate_post(ECHO, json={"name": "Ayu", "extra": "old app field"})
    assert result.status_code == 200
    assert result.json["data"] == {
        "body": {"name": "Ayu", "count": 1},
        "params": {"item_id": str(uuid.UUID(int=7))},
    }


def test_internal_rejects_unknown_fields(cc: testing.TestClient) -> None:
    result = cc.simulate_post("/internal/echo/" + str(uuid.UUID(int=7)), json={"name": "a", "extra": 1})
    error = _error(result, 422, "VALIDATION_ERROR")
    assert "extra" in error["details"]["fields"]


def test_invalid_uuid_in_path_is_404(pub: testing.TestClient) -> None:
    _error(pub.simulate_post("/api/shared/echo/not-a-uuid", json={"name": "a"}), 404, "NOT_FOUND")


def test_malformed_json_is_400(pub: testing.TestClient) -> None:
    result = pub.simulate_post(ECHO, body=b'{"name": ', headers={"Content-Type": "application/json"})
    _error(result, 400, "BAD_REQUEST")


def test_invalid_utf8_is_400(pub: testing.TestClient) -> None:
    result = pub.simulate_post(ECHO, body=b'{"name": "\xff"}', headers={"Content-Type": "application/json"})
    _error(result, 400, "BAD_REQUEST")


def test_non_json_body_is_415(pub: testing.TestClient) -> None:
    result = pub.simulate_post(ECHO, body=b"name=a", headers={"Content-Type": "application/x-www-form-urlencoded"})
    _error(result, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_body_over_64_kib_is_413(pub: testing.TestClient) -> None:
    big = json.dumps({"name": "x" * (64 * 1024)}).encode()
    _error(
        pub.simulate_post(ECHO, body=big, headers={"Content-Type": "application/json"}),
        413,
        "PAYLOAD_TOO_LARGE",
    )


def test_body_just_under_the_limit_is_accepted(pub: testing.TestClient) -> None:
    body = json.dumps({"name": "x" * (64 * 1024 - 20)}).encode()
    assert len(body) <= 64 * 1024
    assert pub.simulate_post(ECHO, body=body, headers={"Content-Type": "application/json"}).status_code == 200


def test_absurdly_deep_json_is_400(pub: testing.TestClient) -> None:
    deep = '{"name": "a", "x": ' + "[" * 5000 + "]" * 5000 + "}"
    _error(pub.simulate_post(ECHO, body=deep, headers={"Content-Type": "application/json"}), 400, "BAD_REQUEST")
    moderately = '{"name": "a", "x": ' + "[" * 40 + "]" * 40 + "}"
    _error(
        pub.simulate_post(ECHO, body=moderately, headers={"Content-Type": "application/json"}),
        400,
        "BAD_REQUEST",
    )


def test_nul_character_is_422(pub: testing.TestClient) -> None:
    error = _error(pub.simulate_post(ECHO, json={"name": "a\u0000b"}), 422, "VALIDATION_ERROR")
    assert "name" in error["details"]["fields"]


def test_float_for_integer_is_422(pub: testing.TestClient) -> None:
    error = _error(pub.simulate_post(ECHO, json={"name": "a", "count": 1.5}), 422, "VALIDATION_ERROR")
    assert "count" in error["details"]["fields"]


@pytest.mark.parametrize("payload", [[], "text", 5, None])
def test_wrong_top_level_type_is_422(pub: testing.TestClient, payload: Any) -> None:
    result = pub.simulate_post(ECHO, body=json.dumps(payload), headers={"Content-Type": "application/json"})
    _error(result, 422, "VALIDATION_ERROR")


def test_missing_required_field_is_422(pub: testing.TestClient) -> None:
    error = _error(pub.simulate_post(ECHO, json={}), 422, "VALIDATION_ERROR")
    assert error["details"]["fields"]["name"]


def test_domain_error_keeps_its_code(pub: testing.TestClient) -> None:
    error = _error(pub.simulate_post("/api/shared/conflict"), 409, "ALREADY_ACTIVE")
    assert error["message"] == "Already active"


def test_unexpected_exception_is_generic_500(pub: testing.TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        result = pub.simulate_get("/api/shared/boom")
    error = _error(result, 500, "INTERNAL_ERROR")
    assert "hunter2" not in result.text
    assert "RuntimeError" not in result.text
    assert error["details"] == {}
    assert any("unhandled error" in r.getMessage() for r in caplog.records)


def test_request_id_echoed_when_well_formed(pub: testing.TestClient) -> None:
    result = pub.simulate_get("/health", headers={"X-Request-Id": "app-42.retry_1"})
    assert result.headers["X-Request-Id"] == "app-42.retry_1"


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "semi;colon", ""])
def test_request_id_replaced_when_malformed(pub: testing.TestClient, bad: str) -> None:
    result = pub.simulate_get("/health", headers={"X-Request-Id": bad})
    assert result.headers["X-Request-Id"] != bad
    uuid.UUID(result.headers["X-Request-Id"])


@pytest.mark.parametrize("path", ["/health", "/nope", "/api/shared/boom"])
def test_every_response_has_a_request_id(pub: testing.TestClient, path: str) -> None:
    uuid.UUID(pub.simulate_get(path).headers["X-Request-Id"])


def test_errors_carry_the_request_id_in_logs(pub: testing.TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        pub.simulate_get("/api/shared/boom", headers={"X-Request-Id": "trace-me"})
    assert any(getattr(r, "request_id", None) == "trace-me" for r in caplog.records if r.name == "access")


def test_trailing_slash_is_tolerated(pub: testing.TestClient) -> None:
    assert pub.simulate_get("/health/").status_code == 200
