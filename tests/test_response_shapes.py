"""The responses the handlers actually send match the shapes their endpoints declare (the OpenAPI
description the apps' clients are generated from): one chat walked end to end through both
listeners, every success body checked against the description, strictly (no undeclared key)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import jsonschema
import pytest
from falcon import testing

from runtime.app import openapi_document
from tests.chatflow import Chat
from tests.conftest import bearer
from tests.payflow import tier_of


def strict(schema: Any) -> Any:
    """The OpenAPI 3.0 schema as JSON Schema (`nullable` becomes a null type), closed: a key the
    declaration does not name fails, so a declaration cannot fall behind its handler."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items() if key not in ("nullable", "description")}
    if schema.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        if "allOf" in out:
            out = {"anyOf": [{"type": "null"}, {"allOf": out.pop("allOf")}], **out}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


class Checked(testing.TestClient):
    """A test client that checks every 2xx body against its listener's description."""

    def __init__(self, client: testing.TestClient, surface: str) -> None:
        super().__init__(client.app)
        self.checked: set[str] = set()
        self._ops: list[tuple[re.Pattern[str], int, dict[str, Any]]] = []
        document = openapi_document(surface)
        self._components = strict(document["components"])  # where the shapes' $refs point
        for path, operations in document["paths"].items():
            pattern = re.compile("^" + re.sub(r"\{[a-z_]+\}", "[^/]+", path) + "$")
            self._ops.append((pattern, path.count("{"), operations))
        self._ops.sort(key=lambda op: op[1])  # a literal segment wins over a parameter (/pending, /{id})

    def simulate_request(self, method: str = "GET", path: str = "/", *args: Any, **kwargs: Any) -> testing.Result:
        result = super().simulate_request(method, path, *args, **kwargs)
        if 200 <= result.status_code < 300:
            self._check(method, path, result)
        return result

    def _check(self, method: str, path: str, result: testing.Result) -> None:
        op = next(ops[method.lower()] for pattern, _, ops in self._ops if pattern.match(path) and method.lower() in ops)
        declared = op["responses"].get(str(result.status_code))
        assert declared is not None, f"{method} {path}: {result.status_code} is not in the description"
        if result.status_code == 204:
            assert not result.content
        else:
            # The components ride along at the root, where "#/components/schemas/..." resolves.
            schema = {**strict(declared["content"]["application/json"]["schema"]), "components": self._components}
            errors = [
                f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                for e in jsonschema.Draft7Validator(schema).iter_errors(result.json)
            ]
            assert errors == [], f"{method} {path} ({op['operationId']})"
        self.checked.add(op["operationId"])


@pytest.fixture
def checked(chat: Chat) -> Chat:
    chat.app = Checked(chat.app, "public")
    chat.cc = Checked(chat.cc, "internal")
    return chat


def test_a_whole_chat_answers_as_declared(checked: Chat) -> None:
    chat = checked
    app, cc = chat.app, chat.cc
    assert isinstance(app, Checked)
    assert isinstance(cc, Checked)
    customer, mitra, mitra_token, session_id = chat.paired()
    me, mine = bearer(customer["access_token"]), bearer(mitra_token)
    for route in (
        "/api/shared/auth-providers",
        "/api/shared/support-handles",
        "/api/shared/config/anonymity",
    ):
        assert app.simulate_get(route).status_code == 200
    for route in (
        "/api/client/me",
        "/api/client/mitra-availability",
        "/api/client/chat/pricing",
        "/api/client/chat/active",
        "/api/client/payment-requests/pending",
        f"/api/shared/chat/{session_id}/info",
    ):
        assert app.simulate_get(route, headers=me).status_code == 200, route
    assert app.simulate_patch("/api/client/me", headers=me, json={"display_name": "Mawar"}).status_code == 200
    assert app.simulate_post("/api/client/usp-seen", headers=me).status_code == 200
    sent = app.simulate_post(
        f"/api/shared/chat/{session_id}/messages", headers=me, json={"client_message_id": "c1", "content": "halo"}
    )
    assert sent.status_code == 201
    assert (
        app.simulate_post(
            f"/api/shared/chat/{session_id}/read", headers=mine, json={"up_to_message_id": sent.json["data"]["id"]}
        ).status_code
        == 204
    )
    assert app.simulate_get(f"/api/shared/chat/{session_id}/messages", headers=mine).status_code == 200
    assert (
        app.simulate_patch(
            f"/api/shared/chat/sessions/{session_id}/topic",
            headers=mine,
            json={"topic_sensitivity": "sensitive", "confirmed": True},
        ).status_code
        == 200
    )
    extension = app.simulate_post(
        f"/api/client/chat/{session_id}/extensions", headers=me, json={"tier_id": tier_of(chat.pay, 15)}
    )
    assert extension.status_code == 201, extension.text
    assert app.simulate_get(f"/api/shared/chat/{session_id}/info", headers=me).status_code == 200
    assert (
        app.simulate_post(
            f"/api/mitra/extensions/{extension.json['data']['id']}/respond", headers=mine, json={"decision": "reject"}
        ).status_code
        == 200
    )
    for route in (
        "/api/mitra/me",
        "/api/mitra/status",
        "/api/mitra/chat-requests/pending",
        "/api/mitra/chat-requests/recent",
        f"/api/mitra/chat-requests/{session_id}/status",
        "/api/mitra/chat/pending",
        "/api/mitra/sessions/active",
    ):
        assert app.simulate_get(route, headers=mine).status_code == 200, route
    assert app.simulate_post("/api/mitra/status/heartbeat", headers=mine).status_code == 204
    assert app.simulate_post(f"/api/client/chat/{session_id}/end", headers=me).status_code == 200
    for who in (me, mine):
        closing = app.simulate_post(f"/api/shared/chat/{session_id}/closing-message", headers=who, json={"skip": True})
        assert closing.status_code == 200, closing.text
    for route in ("/api/client/chat/history", "/api/client/chat/besties", "/api/client/me/export"):
        assert app.simulate_get(route, headers=me).status_code == 200, route
    assert app.simulate_get("/api/mitra/sessions/history", headers=mine).status_code == 200
    assert (
        app.simulate_post("/api/shared/auth/refresh", json={"refresh_token": customer["refresh_token"]}).status_code
        == 200
    )

    admin = bearer(chat.admin())
    payment = chat.pay.db.fetch_one("SELECT id FROM payment_requests WHERE session_id = %(s)s", {"s": session_id})
    webhook = chat.pay.db.fetch_one("SELECT id FROM webhook_logs ORDER BY id DESC LIMIT 1")
    tier = tier_of(chat.pay, 15)
    assert payment is not None
    assert webhook is not None
    for route in (
        "/internal/auth/me",
        "/internal/dashboard",
        "/internal/mitra-activity",
        "/internal/config",
        "/internal/config/mitra-ping",
        "/internal/customers",
        f"/internal/customers/{customer['user']['id']}",
        "/internal/failed-pairings",
        "/internal/mitras",
        f"/internal/mitras/{mitra['id']}",
        f"/internal/mitras/{mitra['id']}/online-logs",
        "/internal/otp-bypass",
        "/internal/payment-requests",
        f"/internal/payment-requests/{payment['id']}",
        "/internal/payments/reconciliation",
        "/internal/pricing/first-session-discount",
        "/internal/pricing/tiers",
        f"/internal/pricing/tiers/{tier}",
        f"/internal/pricing/tiers/{tier}/history",
        "/internal/refunds",
        "/internal/sessions",
        f"/internal/sessions/{session_id}",
        "/internal/users",
        "/internal/webhook-logs",
        f"/internal/webhook-logs/{webhook['id']}",
    ):
        assert cc.simulate_get(route, headers=admin).status_code == 200, route
    read = cc.simulate_post(f"/internal/sessions/{session_id}/transcript", headers=admin, json={"reason": "audit"})
    assert read.status_code == 200, read.text
    assert cc.simulate_get(f"/internal/customers/{uuid.uuid4()}", headers=admin).status_code == 404
    # The walk reached most of both surfaces (what it checked is listed on failure).
    assert len(app.checked) >= 36, (sorted(app.checked), sorted(cc.checked))
    assert len(cc.checked) >= 26, (sorted(app.checked), sorted(cc.checked))


def test_the_control_centers_writes_answer_as_declared(internal: testing.TestClient, cc_login, anonymous) -> None:
    cc = Checked(internal, "internal")
    _, token, _ = cc_login("admin")
    admin = bearer(token)
    created = cc.simulate_post(
        "/internal/users",
        headers=admin,
        json={"email": "ops@halobestie.test", "display_name": "Ops", "role": "operator", "password": "a-long-passw0rd"},
    )
    assert created.status_code == 201, created.text
    user = f"/internal/users/{created.json['data']['id']}"
    assert cc.simulate_get(user, headers=admin).status_code == 200
    assert cc.simulate_patch(user, headers=admin, json={"display_name": "Operasi"}).status_code == 200
    reset = cc.simulate_post(f"{user}/reset-password", headers=admin, json={"password": "another-passw0rd"})
    assert reset.status_code == 204, reset.text
    mitra = cc.simulate_post(
        "/internal/mitras", headers=admin, json={"phone": "+6281277700001", "display_name": "Bestie Baru"}
    )
    assert mitra.status_code == 201, mitra.text
    at = f"/internal/mitras/{mitra.json['data']['id']}"
    assert cc.simulate_patch(at, headers=admin, json={"display_name": "Bestie Lama"}).status_code == 200
    assert cc.simulate_patch(f"{at}/status", headers=admin, json={"is_active": False}).status_code == 200
    entry = cc.simulate_post(
        "/internal/otp-bypass",
        headers=admin,
        json={"phone": "+6281277700002", "code": "123456", "expires_at": "2099-01-01T00:00:00Z"},
    )
    assert entry.status_code == 201, entry.text
    bypass = f"/internal/otp-bypass/{entry.json['data']['id']}"
    assert cc.simulate_patch(bypass, headers=admin, json={"note": "QA"}).status_code == 200
    assert cc.simulate_patch("/internal/otp-bypass", headers=admin, json={"enabled": True}).status_code == 200
    assert cc.simulate_delete(bypass, headers=admin).status_code == 204
    tier = cc.simulate_post(
        "/internal/pricing/tiers", headers=admin, json={"mode": "call", "minutes": 45, "price": 90000, "label": "45"}
    )
    assert tier.status_code == 201, tier.text
    assert (
        cc.simulate_patch(
            f"/internal/pricing/tiers/{tier.json['data']['id']}",
            headers=admin,
            json={"updated_at": tier.json["data"]["updated_at"], "price": 95000},
        ).status_code
        == 200
    )
    discount = cc.simulate_get("/internal/pricing/first-session-discount", headers=admin).json["data"]
    assert (
        cc.simulate_patch(
            "/internal/pricing/first-session-discount", headers=admin, json={"updated_at": discount["updated_at"]}
        ).status_code
        == 200
    )
    assert cc.simulate_patch("/internal/config", headers=admin, json={"otp_max_attempts": 5}).status_code == 200
    assert (
        cc.simulate_patch("/internal/config/mitra-ping", headers=admin, json={"require_ping": True}).status_code == 200
    )
    customer = anonymous("Dihapus")
    erased = cc.simulate_post(
        f"/internal/customers/{customer['user']['id']}/erase", headers=admin, json={"reason": "request by e-mail"}
    )
    assert erased.status_code == 200, erased.text
    seeded = cc.simulate_post(
        "/internal/_test/seed-mitra", json={"phone": "+6281277700003", "display_name": "Uji", "online": True}
    )
    assert seeded.status_code == 201, seeded.text
    for hook, body in (
        ("/internal/_test/seed-customer", {"display_name": "Uji"}),
        ("/internal/_test/force-mitra-offline", {"phone": "+6281277700003"}),
        ("/internal/_test/force-mitra-online", {"phone": "+6281277700003"}),
        ("/internal/_test/reset-all-mitras-online", {}),
        ("/internal/_test/reset-phone", {"phone": "+6281277700002"}),
    ):
        answer = cc.simulate_post(hook, json=body)
        assert 200 <= answer.status_code < 300, (hook, answer.text)
    assert len(cc.checked) >= 24, sorted(cc.checked)


def test_the_apps_account_calls_answer_as_declared(public: testing.TestClient, mitra_login) -> None:
    app = Checked(public, "public")
    made = app.simulate_post("/api/shared/auth/anonymous", json={"display_name": "Baru"})
    assert made.status_code == 201, made.text
    me = bearer(made.json["data"]["access_token"])
    assert app.simulate_post("/api/client/auth/otp/request", json={"phone": "+6281277700011"}).status_code == 200
    mitra, mitra_token = mitra_login()
    assert app.simulate_post("/api/mitra/auth/otp/request", json={"phone": mitra["phone"]}).status_code == 200
    device = {"token": "fcm-token-1", "platform": "android"}
    assert app.simulate_put("/api/shared/devices/fcm-token", headers=me, json=device).status_code == 204
    assert app.simulate_delete("/api/shared/devices/fcm-token", headers=me, json=device).status_code == 204
    mine = bearer(mitra_token)
    assert app.simulate_post("/api/mitra/status/online", headers=mine).status_code == 200
    assert app.simulate_post("/api/mitra/status/offline", headers=mine).status_code == 200
    assert app.simulate_delete("/api/client/me", headers=me).status_code == 200
    assert app.simulate_post("/api/shared/auth/logout", headers=mine).status_code == 204
    assert len(app.checked) >= 8, sorted(app.checked)
