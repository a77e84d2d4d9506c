"""Pricing tiers and the first-session discount: CRUD, optimistic lock, history, eligibility, quotes."""

from __future__ import annotations

from typing import Any

import pytest
from falcon import testing

from lib.pricing import quote
from lib.services import Services
from tests.conftest import bearer

TIERS = "/internal/pricing/tiers"
DISCOUNT = "/internal/pricing/first-session-discount"


@pytest.fixture
def admin(cc_login) -> str:
    return str(cc_login("admin")[1])


def _tiers(internal: testing.TestClient, token: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = internal.simulate_get(TIERS, headers=bearer(token)).json["data"]["items"]
    return items


def test_seeded_chat_tiers(internal: testing.TestClient, admin: str) -> None:
    tiers = [(t["mode"], t["minutes"], t["price"]) for t in _tiers(internal, admin)]
    assert tiers == [
        ("chat", 15, 30000),
        ("chat", 30, 60000),
        ("chat", 45, 100000),
        ("chat", 60, 150000),
        ("chat", 1440, 250000),
    ]


def test_create_and_duplicate(internal: testing.TestClient, admin: str) -> None:
    body = {"mode": "call", "minutes": 20, "price": 50000, "label": "20 menit"}
    created = internal.simulate_post(TIERS, headers=bearer(admin), json=body)
    assert created.status_code == 201, created.text
    assert created.json["data"]["is_active"] is True
    dup = internal.simulate_post(TIERS, headers=bearer(admin), json=body)
    assert dup.status_code == 409
    assert dup.json["error"]["code"] == "TIER_EXISTS"
    bad = internal.simulate_post(TIERS, headers=bearer(admin), json={**body, "minutes": 25, "price": 1.5})
    assert bad.status_code == 422


def test_edit_with_lock_and_history(internal: testing.TestClient, cc_login) -> None:
    user, token, _ = cc_login("admin")
    tier = _tiers(internal, token)[0]
    edited = internal.simulate_patch(
        f"{TIERS}/{tier['id']}", headers=bearer(token), json={"price": 35000, "updated_at": tier["updated_at"]}
    )
    assert edited.status_code == 200, edited.text
    assert edited.json["data"]["price"] == 35000
    assert edited.json["data"]["updated_at"] != tier["updated_at"]
    stale = internal.simulate_patch(
        f"{TIERS}/{tier['id']}", headers=bearer(token), json={"price": 40000, "updated_at": tier["updated_at"]}
    )
    assert stale.status_code == 409
    assert stale.json["error"]["code"] == "STALE_WRITE"
    assert stale.json["error"]["details"]["current"]["price"] == 35000
    removed = internal.simulate_patch(
        f"{TIERS}/{tier['id']}",
        headers=bearer(token),
        json={"is_active": False, "updated_at": edited.json["data"]["updated_at"]},
    )
    assert removed.json["data"]["is_active"] is False
    history = internal.simulate_get(f"{TIERS}/{tier['id']}/history", headers=bearer(token)).json["data"]["items"]
    assert [h["kind"] for h in history] == ["deactivate", "update"]
    assert history[1]["before"]["price"] == 30000
    assert history[1]["after"]["price"] == 35000
    assert history[1]["changed_by"] == str(user["id"])


def test_concurrent_edits_one_wins(internal: testing.TestClient, admin: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    tier = _tiers(internal, admin)[1]

    def edit(price: int) -> int:
        return internal.simulate_patch(
            f"{TIERS}/{tier['id']}", headers=bearer(admin), json={"price": price, "updated_at": tier["updated_at"]}
        ).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = list(pool.map(edit, range(61000, 61006)))
    assert sorted(codes) == [200] + [409] * 5


@pytest.mark.parametrize("field", ["mode", "minutes"])
def test_mode_and_minutes_are_immutable(internal: testing.TestClient, admin: str, field: str) -> None:
    tier = _tiers(internal, admin)[0]
    result = internal.simulate_patch(
        f"{TIERS}/{tier['id']}",
        headers=bearer(admin),
        json={field: "call" if field == "mode" else 99, "updated_at": tier["updated_at"]},
    )
    assert result.status_code == 422
    assert field in result.json["error"]["details"]["fields"]


def test_unknown_tier_is_404(internal: testing.TestClient, admin: str) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    assert internal.simulate_get(f"{TIERS}/{missing}", headers=bearer(admin)).status_code == 404
    assert internal.simulate_get(f"{TIERS}/{missing}/history", headers=bearer(admin)).status_code == 404
    result = internal.simulate_patch(
        f"{TIERS}/{missing}", headers=bearer(admin), json={"price": 1, "updated_at": "2026-01-01T00:00:00Z"}
    )
    assert result.status_code == 404


def test_operator_cannot_manage_pricing(internal: testing.TestClient, cc_login) -> None:
    _, operator, _ = cc_login("operator")
    assert internal.simulate_get(TIERS, headers=bearer(operator)).status_code == 403
    assert internal.simulate_get(DISCOUNT, headers=bearer(operator)).status_code == 403


def test_discount_lock_history_and_rules(internal: testing.TestClient, services: Services, admin: str) -> None:
    current = internal.simulate_get(DISCOUNT, headers=bearer(admin)).json["data"]
    assert current["enabled"] is False
    bad = internal.simulate_patch(
        DISCOUNT,
        headers=bearer(admin),
        json={"enabled": True, "discount_type": "percent", "value": 150, "updated_at": current["updated_at"]},
    )
    assert bad.status_code == 422
    ok = internal.simulate_patch(
        DISCOUNT,
        headers=bearer(admin),
        json={"enabled": True, "discount_type": "percent", "value": 20, "updated_at": current["updated_at"]},
    )
    assert ok.status_code == 200
    assert ok.json["data"]["value"] == 20
    stale = internal.simulate_patch(
        DISCOUNT, headers=bearer(admin), json={"value": 10, "updated_at": current["updated_at"]}
    )
    assert stale.status_code == 409
    assert stale.json["error"]["code"] == "STALE_WRITE"
    assert services.db.fetch_one("SELECT count(*) AS n FROM pricing_promotion_history") == {"n": 1}


def test_customer_pricing_and_eligibility(
    public: testing.TestClient, internal, services: Services, admin: str, anonymous
) -> None:
    pair = anonymous()
    current = internal.simulate_get(DISCOUNT, headers=bearer(admin)).json["data"]
    internal.simulate_patch(
        DISCOUNT,
        headers=bearer(admin),
        json={"enabled": True, "discount_type": "amount", "value": 10000, "updated_at": current["updated_at"]},
    )
    data = public.simulate_get("/api/client/chat/pricing", headers=bearer(pair["access_token"])).json["data"]
    assert [t["minutes"] for t in data["modes"]["chat"]] == [15, 30, 45, 60, 1440]
    assert data["modes"]["call"] == []
    assert data["first_session_discount"] == {
        "enabled": True,
        "discount_type": "amount",
        "value": 10000,
        "eligible": True,
    }
    services.db.execute(
        "UPDATE customers SET first_active_session_at = now() WHERE id = %(id)s", {"id": pair["user"]["id"]}
    )
    data = public.simulate_get("/api/client/chat/pricing", headers=bearer(pair["access_token"])).json["data"]
    assert data["first_session_discount"]["eligible"] is False


def test_quote(services: Services, anonymous) -> None:
    customer = anonymous()["user"]["id"]
    with services.db.connection() as conn:
        tier = conn.execute("SELECT id FROM pricing_tiers WHERE minutes = 30").fetchone()
        assert tier is not None
        assert quote(conn, str(tier["id"]), customer).amount == 60000  # discount disabled
        conn.execute("UPDATE pricing_promotions SET enabled = true, discount_type = 'percent', value = 25")
        q = quote(conn, str(tier["id"]), customer)
        assert (q.price, q.discount, q.amount) == (60000, 15000, 45000)
        assert quote(conn, str(tier["id"]), customer, allow_discount=False).discount == 0  # extensions
        conn.execute("UPDATE pricing_promotions SET discount_type = 'amount', value = 999999")
        assert quote(conn, str(tier["id"]), customer).amount == 0  # never negative
    from lib.errors import ValidationFailed

    with services.db.connection() as conn, pytest.raises(ValidationFailed) as err:
        quote(conn, str(tier["id"]), customer, mode="call")
    assert err.value.code == "TIER_NOT_FOUND"
