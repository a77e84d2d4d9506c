"""Every list answers {items, next_cursor, has_more} and pages correctly: checked once for every
route in the table, so the next list cannot drift (API.md, Conventions)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from falcon import testing

from lib.endpoint import Auth
from lib.pagination import PageQuery
from lib.services import Services
from runtime.app import SURFACES, create_app, routes_for
from runtime.router import Route
from tests.conftest import bearer

# Documented shapes that carry `items` without being a cursor list (API.md, "Shapes and edge rules").
NOT_LISTS = {"/internal/config"}
# Lists that can never hold two rows for one caller: one open payment request per customer.
AT_MOST_ONE = {"/api/client/payment-requests/pending"}
LIST_KEYS = {"items", "next_cursor", "has_more"}


def _is_list(route: Route) -> bool:
    return route.endpoint.query is not None and issubclass(route.endpoint.query, PageQuery)


@pytest.fixture
def world(services: Services, anonymous, mitra_login, cc_login, make_mitra) -> dict[str, Any]:
    """At least two rows behind every list, and the ids its path parameters need."""
    customer = anonymous("Pelanggan")
    other = anonymous("Lain")
    mitra, mitra_token = mitra_login()
    second_mitra = make_mitra("+6281299900002", "Bestie Dua")
    admin, admin_token, _ = cc_login("admin")
    cc_login("operator")
    db = services.db
    tier = db.fetch_one("SELECT id FROM pricing_tiers ORDER BY minutes LIMIT 1")
    assert tier is not None
    tier_id = str(tier["id"])
    for price in (31000, 32000):
        db.execute("UPDATE pricing_tiers SET price = %(p)s WHERE id = %(id)s", {"p": price, "id": tier_id})
        db.execute(
            "INSERT INTO pricing_tier_history (tier_id, kind, after, changed_by) VALUES (%(t)s, 'update', %(a)s, %(u)s)",
            {"t": tier_id, "a": json.dumps({"price": price}), "u": admin["id"]},
        )
    for online in (True, False):
        db.execute(
            "INSERT INTO mitra_online_logs (mitra_id, is_online, reason) VALUES (%(m)s, %(o)s, 'manual')",
            {"m": mitra["id"], "o": online},
        )
    for n in (1, 2):
        db.execute(
            "INSERT INTO otp_bypass_entries (phone, code_hash, expires_at) VALUES (%(p)s, 'x', now() + interval '1 day')",
            {"p": f"+628120000990{n}"},
        )
    requests = []
    for owner, status in ((customer, "pending"), (customer, "abandoned"), (other, "failed_pairing")):
        row = db.fetch_one(
            "INSERT INTO payment_requests (customer_id, mode, tier_id, minutes, price, amount, status, expires_at) "
            "VALUES (%(c)s, 'chat', %(t)s, 15, 30000, 30000, %(s)s, now() + interval '1 hour') RETURNING id",
            {"c": owner["user"]["id"], "t": tier_id, "s": status},
        )
        assert row is not None
        requests.append(str(row["id"]))
    for request_id in requests[1:]:
        db.execute(
            "INSERT INTO pairing_failures (payment_request_id, customer_id, cause) "
            "SELECT id, customer_id, 'test' FROM payment_requests WHERE id = %(id)s",
            {"id": request_id},
        )
        db.execute(
            "INSERT INTO webhook_logs (external_id, status, raw_body) VALUES (%(e)s, 'PAID', '{}')", {"e": request_id}
        )
        db.execute(
            "INSERT INTO refunds (payment_request_id, customer_id, invoice_id, amount, currency, reason) "
            "SELECT id, customer_id, 'inv-' || id::text, amount, currency, 'test' FROM payment_requests WHERE id = %(id)s",
            {"id": request_id},
        )
    # Chats: the customer's two completed sessions (with two mitras, messages in the first); the
    # mitra's two live sessions and two open requests, with customers of their own.
    mine = []
    for with_mitra in (mitra["id"], second_mitra["id"]):
        row = db.fetch_one(
            "INSERT INTO chat_sessions (customer_id, mitra_id, status, duration_minutes, started_at, expires_at, "
            "ended_at, completed_at) VALUES (%(c)s, %(m)s, 'completed', 15, now() - interval '1 hour', "
            "now() - interval '45 minutes', now() - interval '45 minutes', now() - interval '40 minutes') RETURNING id",
            {"c": customer["user"]["id"], "m": with_mitra},
        )
        assert row is not None
        mine.append(str(row["id"]))
    for sender, sender_id in (("customer", customer["user"]["id"]), ("mitra", mitra["id"])):
        db.execute(
            "INSERT INTO chat_messages (session_id, sender_type, sender_id, client_message_id, content) "
            "VALUES (%(s)s, %(t)s, %(u)s, %(cm)s, 'halo')",
            {"s": mine[0], "t": sender, "u": sender_id, "cm": f"seed-{sender}"},
        )
    for status in ("active", "closing", "searching", "searching"):
        db.execute(
            "WITH c AS (INSERT INTO customers (display_name) VALUES ('Seed') RETURNING id), "
            "s AS (INSERT INTO chat_sessions (customer_id, mitra_id, status, duration_minutes, started_at, "
            "expires_at, search_expires_at) SELECT c.id, CASE WHEN %(st)s = 'searching' THEN NULL ELSE %(m)s::uuid END, "
            "%(st)s, 15, now(), now() + interval '15 minutes', now() + interval '1 minute' FROM c RETURNING id) "
            "INSERT INTO chat_request_notifications (session_id, mitra_id, request_type) SELECT s.id, %(m)s, 'blast' "
            "FROM s WHERE %(st)s = 'searching'",
            {"st": status, "m": mitra["id"]},
        )
    return {
        "tokens": {
            Auth.CUSTOMER: customer["access_token"],
            Auth.OPTIONAL_CUSTOMER: customer["access_token"],
            Auth.ANY_APP_USER: customer["access_token"],
            Auth.MITRA: mitra_token,
            Auth.CC_USER: admin_token,
        },
        "params": {
            "tier_id": tier_id,
            "mitra_id": str(mitra["id"]),
            "user_id": str(admin["id"]),
            "request_id": requests[0],
            "entry_id": str(uuid.uuid4()),
            "failure_id": str(uuid.uuid4()),
            "log_id": "1",
            "session_id": mine[0],
            "customer_id": str(customer["user"]["id"]),
        },
    }


def _url(route: Route, params: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in params, f"{route.module}: add a value for path parameter {name!r} to this test"
        return params[name]

    return re.sub(r"\{([a-z_]+)[^}]*\}", fill, route.endpoint.route)


def _get(client: testing.TestClient, route: Route, world: dict[str, Any], **query: Any) -> testing.Result:
    token = world["tokens"].get(route.endpoint.auth)
    headers = bearer(token) if token else {}
    return client.simulate_get(_url(route, world["params"]), headers=headers, params=query)


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [str(item.get("id") or item["session_id"]) for item in items]


def test_every_list_route_has_the_list_shape_and_pages(services: Services, world: dict[str, Any]) -> None:
    checked = []
    for surface in SURFACES:
        client = testing.TestClient(create_app(surface, services))
        for route in routes_for(surface):
            if route.endpoint.method != "GET":
                continue
            if not _is_list(route):
                result = _get(client, route, world)
                if result.headers.get("content-type", "").startswith("application/json") and result.status_code == 200:
                    data = result.json.get("data", result.json)
                    assert not isinstance(data, list), f"{route.module} answers a bare list: make it a page"
                    if route.endpoint.route not in NOT_LISTS:
                        assert "items" not in data, f"{route.module} answers items without declaring PageQuery"
                continue
            full = _get(client, route, world, limit=100)
            assert full.status_code == 200, (route.module, full.text)
            assert set(full.json["data"]) == LIST_KEYS, route.module
            everything = full.json["data"]["items"]
            assert full.json["data"]["has_more"] is False
            assert full.json["data"]["next_cursor"] is None
            enough = 1 if route.endpoint.route in AT_MOST_ONE else 2
            assert len(everything) >= enough, f"{route.module}: seed at least two rows so paging is exercised"
            paged: list[dict[str, Any]] = []
            cursor = None
            for _ in range(len(everything)):
                query = {"limit": 1} | ({"cursor": cursor} if cursor else {})
                page = _get(client, route, world, **query).json["data"]
                assert set(page) == LIST_KEYS, route.module
                assert len(page["items"]) == 1, route.module
                paged += page["items"]
                cursor = page["next_cursor"]
                assert page["has_more"] is (cursor is not None)
                if cursor is None:
                    break
            assert _ids(paged) == _ids(everything), f"{route.module}: pages do not add up to the whole list"
            forged = _get(client, route, world, cursor="eyJub3QiOiAiYSBjdXJzb3IifQ")
            assert forged.status_code == 422, route.module
            checked.append(route.endpoint.route)
    assert len(checked) >= 10  # the walk did find the lists
