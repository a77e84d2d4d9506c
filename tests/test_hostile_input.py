"""The one input rule set (lib/inputs.py) on every REST surface, and the database boundary that
turns any constraint violation into a 4xx: the junk that reached 500s in issue 22, each case."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import psycopg
import pytest
from falcon import testing

from lib import constraints, inputs
from lib.errors import ApiError, BadRequest, Conflict, ValidationFailed
from lib.services import Services
from tests.conftest import bearer

SURROGATE = '"\\ud800"'  # the JSON escape of a lone surrogate: valid JSON, unstorable text


def _raw(client: testing.TestClient, method: str, path: str, body: str, headers: dict[str, str] | None = None) -> Any:
    return client.simulate_request(
        method, path, body=body.encode(), headers={"Content-Type": "application/json", **(headers or {})}
    )


def _refused(result: Any, status: int = 422, code: str = "VALIDATION_ERROR") -> None:
    assert result.status_code == status, result.text
    assert result.json["success"] is False
    assert result.json["error"]["code"] == code
    assert result.headers.get("X-Request-Id")


@pytest.mark.parametrize(
    ("text", "ok"),
    [("plain", True), ("kopi ☕ 🎉", True), ("a\x00b", False), ("\ud800", False), ("x\udfffy", False)],
)
def test_storable(text: str, ok: bool) -> None:
    assert inputs.storable(text) is ok
    assert json.dumps(inputs.safe_name(text), ensure_ascii=False).encode()  # always encodable


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("[" * 1100 + "]" * 1100, BadRequest),
        ('{"a": ' * 40 + "1" + "}" * 40, BadRequest),
        ('{"a": "x\\u0000"}', ValidationFailed),
        ('{"\\ud800": 1}', ValidationFailed),
        ('{"n": ' + "9" * 5000 + "}", BadRequest),  # beyond the parser's digit limit
        ('{"n": 100000000000000000000}', ValidationFailed),  # 10^20: a bigint overflow in SQL
        ('{"n": NaN}', ValidationFailed),
        ('{"n": -Infinity}', ValidationFailed),
    ],
)
def test_parse_json_refuses(raw: str, error: type[ApiError]) -> None:
    with pytest.raises(error):
        inputs.parse_json(raw)


def test_checking_a_body_holds_no_memory_per_node() -> None:
    # One 64 KiB body: a 40 KB key over 12,700 list items made the walk hold ~470 MB of paths.
    import tracemalloc

    body = json.dumps({"k" * 40_000: [0] * 12_000})
    tracemalloc.start()
    try:
        inputs.parse_json(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000  # the whole parse; holding a path per node took ~470 MB


def test_an_error_names_the_field_by_its_path_bounded() -> None:
    with pytest.raises(ValidationFailed) as caught:
        inputs.parse_json('{"a": {"b": [1, "x\\u0000"]}}')
    assert caught.value.details["fields"] == {"a.b[1]": [inputs.UNSTORABLE]}
    with pytest.raises(ValidationFailed) as long:
        inputs.parse_json(json.dumps({"k" * 5000: "\x00"}))
    assert all(len(name) <= inputs.MAX_PATH + 3 for name in long.value.details["fields"])


def test_parse_json_keeps_what_is_fine() -> None:
    assert inputs.parse_json('{"n": 9223372036854775807, "t": "é 😀", "l": [[[1]]]}')["n"] == 2**63 - 1


def test_display_names_with_unstorable_text_are_422(
    public: testing.TestClient, internal: testing.TestClient, anonymous, cc_login
) -> None:
    _refused(_raw(public, "POST", "/api/shared/auth/anonymous", '{"display_name": ' + SURROGATE + "}"))
    _refused(_raw(public, "POST", "/api/shared/auth/anonymous", '{"display_name": "a\\u0000b"}'))
    token = anonymous()["access_token"]
    _refused(_raw(public, "PATCH", "/api/client/me", '{"display_name": ' + SURROGATE + "}", bearer(token)))
    admin = bearer(cc_login("admin")[1])
    body = '{"phone": "+6281299990000", "display_name": ' + SURROGATE + "}"
    _refused(_raw(internal, "POST", "/internal/mitras", body, admin))


def test_an_unknown_field_named_with_a_surrogate_is_an_enveloped_422(internal: testing.TestClient, cc_login) -> None:
    admin = bearer(cc_login("admin")[1])
    result = _raw(internal, "POST", "/internal/mitras", '{"phone": "+6281299990001", ' + SURROGATE + ": 1}", admin)
    _refused(result)


def test_display_names_are_stored_as_validated(public: testing.TestClient, internal: testing.TestClient, cc_login):
    spaces = public.simulate_post("/api/shared/auth/anonymous", json={"display_name": "   "})
    assert spaces.status_code == 201
    assert spaces.json["data"]["user"]["display_name"] is None
    padded = public.simulate_post("/api/shared/auth/anonymous", json={"display_name": "  Sari  "})
    assert padded.json["data"]["user"]["display_name"] == "Sari"
    admin = bearer(cc_login("admin")[1])
    blank = internal.simulate_post(
        "/internal/mitras", json={"phone": "+6281299990002", "display_name": "  "}, headers=admin
    )
    _refused(blank)


def test_a_reason_of_spaces_is_refused_before_anything_happens(
    internal: testing.TestClient, services: Services, anonymous, cc_login
) -> None:
    customer_id = anonymous()["user"]["id"]
    admin = bearer(cc_login("admin")[1])
    reason = {"reason": "      "}
    _refused(internal.simulate_post(f"/internal/customers/{customer_id}/erase", json=reason, headers=admin))
    row = services.db.fetch_one("SELECT erased_at FROM customers WHERE id = %(id)s", {"id": customer_id})
    assert row is not None
    assert row["erased_at"] is None
    assert not services.db.fetch_all("SELECT 1 FROM privacy_audit")
    session = internal.simulate_post(f"/internal/sessions/{uuid.uuid4()}/transcript", json=reason, headers=admin)
    _refused(session)
    padded = internal.simulate_post(
        f"/internal/customers/{customer_id}/erase", json={"reason": "  asked by phone  "}, headers=admin
    )
    assert padded.status_code == 200, padded.text
    audited = services.db.fetch_one("SELECT reason FROM privacy_audit WHERE action = 'erase'")
    assert audited == {"reason": "asked by phone"}


@pytest.mark.parametrize("blank", ["   ", "\u200b", "\u3000\u00a0", " \ufeff\u2060 "])
def test_names_and_labels_that_show_nothing_are_refused(
    public: testing.TestClient, internal: testing.TestClient, services: Services, cc_login, make_mitra, blank: str
) -> None:
    admin = bearer(cc_login("admin")[1])
    signup = public.simulate_post("/api/shared/auth/anonymous", json={"display_name": blank})
    assert signup.status_code == 201
    assert signup.json["data"]["user"]["display_name"] is None
    mitra = make_mitra("+6281299990042")
    _refused(internal.simulate_patch(f"/internal/mitras/{mitra['id']}", json={"display_name": blank}, headers=admin))
    tier = {"mode": "chat", "minutes": 45, "price": 1000, "label": blank}
    _refused(internal.simulate_post("/internal/pricing/tiers", json=tier, headers=admin))
    user = {"email": "new@halobestie.test", "display_name": blank, "role": "operator", "password": "x" * 12}
    _refused(internal.simulate_post("/internal/users", json=user, headers=admin))


def test_a_reason_must_show_three_characters(internal: testing.TestClient, services: Services, anonymous, cc_login):
    customer_id = anonymous()["user"]["id"]
    admin = bearer(cc_login("admin")[1])
    for reason in ("\u200b\u200b\u200b", "a\u200b\u200bb"):
        erase = internal.simulate_post(
            f"/internal/customers/{customer_id}/erase", json={"reason": reason}, headers=admin
        )
        _refused(erase)
    row = services.db.fetch_one("SELECT erased_at FROM customers WHERE id = %(id)s", {"id": customer_id})
    assert row == {"erased_at": None}


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "query",
    [
        "limit=%C2%B2",  # "²": str.isdigit() says yes, int() says no
        "limit=%D9%A3",  # "٣": int() reads it; the rule says ASCII
        "limit=" + "9" * 5000,
        "limit=%00",
        "cursor=" + _cursor("[" * 1100 + "]" * 1100),
        "cursor=" + _cursor("[100000000000000000000]"),  # 10^20: bigint overflow in SQL
        "cursor=" + _cursor('["2026-01-01T00:00:00+00:00", "not-a-uuid"]'),
        "cursor=" + _cursor('["\\ud800", 1]'),
        "cursor=" + "A" * 5000,
        "cursor=%ED%A0%80",
        "cursor=not%00base64",
    ],
)
def test_list_queries_are_checked_before_use(
    public: testing.TestClient, internal: testing.TestClient, anonymous, cc_login, query: str
) -> None:
    customer = bearer(anonymous()["access_token"])
    _refused(public.simulate_get("/api/client/chat/history", query_string=query, headers=customer))
    admin = bearer(cc_login("admin")[1])
    for path in ("/internal/customers", "/internal/webhook-logs", "/internal/mitra-activity"):
        _refused(internal.simulate_get(path, query_string=query, headers=admin))


@pytest.mark.parametrize("query", ["limit=0", "limit=500", "limit=-3", "cursor="])
def test_limits_are_clamped_and_an_empty_cursor_is_the_first_page(
    internal: testing.TestClient, cc_login, query: str
) -> None:
    admin = bearer(cc_login("admin")[1])
    result = internal.simulate_get("/internal/customers", query_string=query, headers=admin)
    assert result.status_code == 200, result.text


def test_a_path_parameter_with_unstorable_text_is_422(public: testing.TestClient) -> None:
    # Path parameters of our routes are typed (uuid) or absent; the rule still holds for text ones.
    inputs.check_params({"name": "ok"})
    with pytest.raises(ValidationFailed):
        inputs.check_params({"name": "a\x00"})
    with pytest.raises(ValidationFailed):
        inputs.check_params({"\ud800": "x"})


def test_error_details_that_cannot_be_encoded_are_scrubbed_not_a_bare_500() -> None:
    from falcon import Response

    from runtime.http import render_error

    resp = Response()
    render_error(resp, ValidationFailed({"\ud800bad": ["Unknown field."]}))
    body = json.loads(resp.data or b"")
    assert resp.status == 422
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert list(body["error"]["details"]["fields"]) == ["?bad"]


@pytest.mark.parametrize(
    ("statement", "error", "code"),
    [
        (
            "INSERT INTO pricing_tiers (mode, minutes, price, label) VALUES ('chat', -1, 1000, 'x')",
            ValidationFailed,
            "VALIDATION_ERROR",
        ),
        (
            "INSERT INTO pricing_tiers (mode, minutes, price, label) VALUES ('chat', NULL, 1000, 'x')",
            ValidationFailed,
            "VALIDATION_ERROR",
        ),
        ("SELECT %(big)s::int", ValidationFailed, "VALIDATION_ERROR"),
        ("SELECT 'not-a-uuid'::uuid", ValidationFailed, "VALIDATION_ERROR"),
        (
            "INSERT INTO chat_sessions (customer_id, status) VALUES (gen_random_uuid(), 'searching')",
            Conflict,
            "REFERENCE_MISSING",
        ),
    ],
)
def test_every_constraint_violation_leaves_the_database_boundary_as_a_4xx(
    services: Services, statement: str, error: type[ApiError], code: str
) -> None:
    with pytest.raises(error) as caught:
        services.db.fetch_all(statement, {"big": 10**20})
    assert caught.value.code == code
    assert caught.value.status < 500


def test_unencodable_text_that_reaches_the_database_is_a_422(services: Services) -> None:
    with pytest.raises(ValidationFailed):
        services.db.fetch_one("SELECT %(t)s::text", {"t": "a\ud800"})


def test_listed_unique_constraints_keep_their_own_code(services: Services) -> None:
    services.db.execute("INSERT INTO pricing_tiers (mode, minutes, price, label) VALUES ('chat', 7, 1000, 'x')")
    with pytest.raises(constraints.TierExists):
        services.db.execute("INSERT INTO pricing_tiers (mode, minutes, price, label) VALUES ('chat', 7, 2000, 'x')")
    assert issubclass(psycopg.errors.CheckViolation, psycopg.IntegrityError)  # what lib/db catches


@pytest.mark.parametrize(
    ("forwarded", "hops", "expected"),
    [
        ("203.0.113.7", 1, "203.0.113.7"),
        ("junk\x01, 198.51.100.2", 1, "198.51.100.2"),
        ("not-an-ip", 1, "10.0.0.1"),  # a header anyone can write is only trusted when it is an address
        ("2001:db8::1", 1, "2001:db8::1"),
        ("' OR 1=1 --", 2, "10.0.0.1"),
        ("fe80::1%' OR 1=1 --", 1, "10.0.0.1"),
        ("::ffff:203.0.113.9", 1, "203.0.113.9"),
    ],
)
def test_the_client_address_read_from_a_header_is_an_address(forwarded: str, hops: int, expected: str) -> None:
    from lib.requests_ip import client_ip

    req = testing.create_req(headers={"X-Forwarded-For": forwarded}, remote_addr="10.0.0.1")
    assert client_ip(req, hops) == expected


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::1", "::1"),  # ::/64 is no client's network: each address alone
        ("::ffff:203.0.113.9", "203.0.113.9"),  # an IPv4 client on a dual-stack listener
        ("::ffff:203.0.113.10", "203.0.113.10"),
        ("64:ff9b::203.0.113.11", "203.0.113.11"),  # NAT64's well-known prefix
        ("2002:cb00:7107::1", "203.0.113.7"),  # 6to4: the site's IPv4 address
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "192.0.2.45"),  # Teredo: the client's, not the server's
        ("testclient", "testclient"),  # falcon.testing's remote_addr: not an address, counted as it is
    ],
)
def test_a_limit_per_address_counts_an_ipv6_client_by_its_64(address: str, network: str) -> None:
    from lib.requests_ip import network_of

    assert network_of(address) == network
