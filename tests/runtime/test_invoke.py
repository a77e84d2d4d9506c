"""invoke() runs the listeners' pipeline: the same status, headers and body as the same request over
HTTP (falcon.testing against the app a listener serves), for every kind of answer; and
`python -m runtime invoke` prints them."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from falcon import testing

from lib.auth.flows import sign_in
from lib.config.env import Settings
from lib.principal import Principal
from lib.services import Services
from runtime.invoke import Invocation, invoke
from tests.conftest import PROJECT_ROOT, bearer
from tests.helpers import call_handler, process_env

RID = {"X-Request-Id": "invoke-test-0001"}


def _same(via_invoke: Invocation, via_http: testing.Result) -> None:
    assert via_invoke.status == via_http.status_code
    assert via_invoke.body == (via_http.json if via_http.content else None)
    ours = sorted((k.lower(), v) for k, v in via_invoke.headers.items() if k.lower() != "set-cookie")
    theirs = sorted((k.lower(), v) for k, v in via_http.headers.items() if k.lower() != "set-cookie")
    assert ours == theirs


def _both(
    client: testing.TestClient,
    services: Services,
    method: str,
    path: str,
    token: str | None = None,
    json: Any = None,
    headers: dict[str, str] | None = None,
    surface: str | None = None,
) -> Invocation:
    sent = RID | (headers or {}) | (bearer(token) if token else {})
    via_http = client.simulate_request(method, path, headers=sent, json=json)
    via_invoke = invoke(services, f"{method} {path}", headers=sent, json=json, surface=surface)
    _same(via_invoke, via_http)
    return via_invoke


def test_success_and_401_without_a_token(public: testing.TestClient, services: Services, anonymous) -> None:
    customer = anonymous("Invoker")
    ok = _both(public, services, "GET", "/api/client/me", customer["access_token"])
    assert ok.status == 200
    assert ok.body["data"]["id"] == customer["user"]["id"]
    assert ok.headers["X-Request-Id"] == RID["X-Request-Id"]
    denied = _both(public, services, "GET", "/api/client/me")
    assert denied.status == 401
    assert denied.body["error"]["code"] == "UNAUTHORIZED"


def test_internal_paths_go_to_the_internal_app(internal: testing.TestClient, services: Services) -> None:
    assert _both(internal, services, "GET", "/internal/config").status == 401
    assert _both(internal, services, "GET", "/health").status == 200


def test_403_for_a_missing_permission_and_a_wrong_user_type(
    internal: testing.TestClient, public: testing.TestClient, services: Services, cc_login, mitra_login
) -> None:
    _, operator, _ = cc_login("operator")
    refused = _both(internal, services, "GET", "/internal/pricing/tiers", operator)
    assert refused.status == 403
    assert refused.body["error"]["details"] == {"permission": "pricing.manage"}
    _, mitra = mitra_login()
    assert _both(public, services, "GET", "/api/client/me", mitra).status == 403


def test_422_for_a_bad_body_with_the_surfaces_unknown_field_rule(
    public: testing.TestClient, internal: testing.TestClient, services: Services, anonymous, cc_login
) -> None:
    customer = anonymous()
    bad = _both(public, services, "POST", "/api/client/payment-requests", customer["access_token"], {"mode": "x"})
    assert bad.status == 422
    assert set(bad.body["error"]["details"]["fields"]) == {"mode", "tier_id"}
    _, admin, _ = cc_login("admin")
    typo = {"label": "x", "lable": "y"}
    tier = services.db.fetch_one("SELECT id FROM pricing_tiers LIMIT 1")
    assert tier is not None
    unknown = _both(internal, services, "PATCH", f"/internal/pricing/tiers/{tier['id']}", admin, typo)
    assert unknown.status == 422
    assert "lable" in unknown.body["error"]["details"]["fields"]


def test_404s_from_the_router_and_from_a_handler(public: testing.TestClient, services: Services, anonymous) -> None:
    customer = anonymous()
    assert _both(public, services, "GET", "/api/client/nothing-here").status == 404
    assert (
        _both(public, services, "GET", "/api/client/payment-requests/not-a-uuid", customer["access_token"]).status
        == 404
    )
    missing = f"/api/client/payment-requests/{uuid.uuid4()}"
    assert _both(public, services, "GET", missing, customer["access_token"]).status == 404
    # invoke() sends /internal/... to the internal app; the public listener has no such route
    assert _both(public, services, "GET", "/internal/config", surface="public").status == 404
    assert _both(public, services, "DELETE", "/api/client/usp-seen", customer["access_token"]).status == 405


def test_a_list_without_a_cursor_and_a_204(public: testing.TestClient, services: Services, mitra_login) -> None:
    _, mitra = mitra_login()
    page = _both(public, services, "GET", "/api/mitra/chat-requests/pending", mitra)
    assert page.status == 200
    assert page.body["data"] == {"items": [], "next_cursor": None, "has_more": False}
    beat = _both(public, services, "POST", "/api/mitra/status/heartbeat", mitra)
    assert beat.status == 204
    assert beat.body is None


def test_query_strings_and_the_shared_input_checks(public: testing.TestClient, services: Services, mitra_login) -> None:
    _, mitra = mitra_login()
    path = "/api/mitra/chat-requests/pending"
    limited = invoke(services, f"GET {path}?limit=1", token=mitra)
    assert limited.status == 200
    assert limited.body == invoke(services, f"GET {path}", query={"limit": 1}, token=mitra).body
    _both(public, services, "GET", f"{path}?limit=%00", mitra)  # NUL: 422 by lib/inputs, the same both ways
    assert invoke(services, f"GET {path}?limit=%00", token=mitra).status == 422


def test_a_principal_is_authenticated_like_its_token(services: Services, make_mitra) -> None:
    mitra = make_mitra()
    with services.db.connection() as conn:
        grant = sign_in(conn, services.settings, "mitra", str(mitra["id"]))
    who = Principal(user_type="mitra", user_id=str(mitra["id"]), session_id=grant.session_id)
    assert call_handler(services, "GET /api/mitra/me", principal=who)["id"] == str(mitra["id"])
    as_customer = Principal(user_type="customer", user_id=str(uuid.uuid4()), session_id=str(uuid.uuid4()))
    assert invoke(services, "GET /api/mitra/me", principal=as_customer).status == 403
    services.revocations.revoke_sessions([grant.session_id], reason="logout")
    assert call_handler(services, "GET /api/mitra/me", principal=who, status=401)["error"]["code"] == "UNAUTHORIZED"


def test_arguments_are_checked(services: Services) -> None:
    with pytest.raises(ValueError, match="METHOD /path"):
        invoke(services, "/health")
    with pytest.raises(ValueError, match="not both"):
        invoke(services, "GET /health", token="a", principal=Principal("customer", "u", "s"))


def run_runtime(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m runtime ARGS...` in the project, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_runtime("invoke", *args, env=process_env(settings))


def _answer(run: subprocess.CompletedProcess[str]) -> tuple[str, Any]:
    """The status line and the JSON body `invoke` printed."""
    status, _, body = run.stdout.partition("\n")
    return status, json.loads(body) if body.strip() else None


def test_cli_answers_as_http_does(settings: Settings, tmp_path: Path) -> None:
    anonymous = _cli(settings, "GET", "/api/client/me")
    assert anonymous.returncode == 1, anonymous.stderr
    status, body = _answer(anonymous)
    assert status == "401 Unauthorized"
    assert body["error"]["code"] == "UNAUTHORIZED"

    signed_in = _cli(settings, "get", "/api/client/me", "--as", "customer")
    assert signed_in.returncode == 0, signed_in.stderr
    status, body = _answer(signed_in)
    assert status == "200 OK"
    assert body["success"] is True
    customer_id = body["data"]["id"]
    assert f"as customer {customer_id} (new; --user-id {customer_id}" in signed_in.stderr
    assert '\n  "success": true,\n' in signed_in.stdout  # pretty JSON

    again = _cli(settings, "GET", "/api/client/me", "--as", "customer", "--user-id", customer_id)
    assert _answer(again)[1]["data"]["id"] == customer_id
    assert "(new" not in again.stderr

    bad = tmp_path / "bad.json"
    bad.write_text('{"mode": "x"}')
    refused = _cli(settings, "POST", "/api/client/payment-requests", "--as", "customer", "--json", f"@{bad}")
    status, body = _answer(refused)
    assert refused.returncode == 1
    assert status == "422 Unprocessable Entity"
    assert set(body["error"]["details"]["fields"]) == {"mode", "tier_id"}


def test_cli_callers_headers_and_usage(settings: Settings) -> None:
    operator = _cli(settings, "GET", "/internal/pricing/tiers", "--as", "cc:operator")
    assert _answer(operator)[0] == "403 Forbidden", operator.stdout + operator.stderr
    admin = _cli(settings, "GET", "/internal/pricing/tiers?limit=1", "--as", "cc")
    status, body = _answer(admin)
    assert status == "200 OK"
    assert len(body["data"]["items"]) == 1

    beat = _cli(
        settings, "POST", "/api/mitra/status/heartbeat", "--as", "mitra", "-i", "--header", "X-Request-Id: cli-1"
    )
    assert beat.returncode == 0, beat.stderr
    assert beat.stdout.splitlines()[0] == "204 No Content"
    assert "x-request-id: cli-1" in beat.stdout.lower()

    for args, message in (
        (["GET", "/api/client/me", "--user-id", str(uuid.uuid4())], "--user-id needs --as"),
        (["GET", "/api/client/me", "--as", "robot"], "--as takes customer, mitra or cc[:role]"),
        (["POST", "/api/client/usp-seen", "--json", "{nope"], "--json is not JSON"),
    ):
        wrong = _cli(settings, *args)
        assert wrong.returncode == 2, wrong.stderr
        assert message in wrong.stderr, wrong.stderr
    unknown = _cli(settings, "GET", "/api/client/me", "--as", "customer", "--user-id", str(uuid.uuid4()))
    assert unknown.returncode == 1
    assert "ACCOUNT_NOT_FOUND" in unknown.stderr
