"""Pricing tiers and the first-session discount: documents, optimistic-lock edits with history,
and the quote a payment request charges."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from lib.db import Conn, Database
from lib.errors import Conflict, NotFound, ValidationFailed
from lib.pagination import Keyset

MODES = ("chat", "call")
TIER_FIELDS = ("label", "price", "sort_order", "is_active")
# Display order for the control center's tier list, and newest first for a tier's history.
TIER_ORDER = Keyset(("mode", "text"), ("sort_order", "int"), ("minutes", "int"), ("id", "uuid"), descending=False)
HISTORY_ORDER = Keyset(("changed_at", "time"), ("id", "int"))
_TIER_PAGE = sql.SQL("SELECT * FROM pricing_tiers WHERE {after} ORDER BY {order} LIMIT %(limit)s").format(
    after=TIER_ORDER.after(), order=TIER_ORDER.order()
)
_HISTORY = sql.SQL(
    "SELECT h.id, h.kind, h.before, h.after, h.changed_by, u.email AS changed_by_email, h.changed_at "
    "FROM pricing_tier_history h LEFT JOIN cc_users u ON u.id = h.changed_by "
    "WHERE h.tier_id = %(tier_id)s AND {after} ORDER BY {order} LIMIT %(limit)s"
).format(after=HISTORY_ORDER.after("h"), order=HISTORY_ORDER.order("h"))


def tier_doc(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("id", "mode", "minutes", "price", "label", "sort_order", "is_active", "updated_at")}


def discount_doc(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("enabled", "discount_type", "value", "updated_at")}


def _json(doc: dict[str, Any]) -> Jsonb:
    return Jsonb(
        {k: (v.isoformat() if isinstance(v, datetime) else str(v) if k == "id" else v) for k, v in doc.items()}
    )


def active_tiers(db: Database) -> list[dict[str, Any]]:
    rows = db.fetch_all("SELECT * FROM pricing_tiers WHERE is_active ORDER BY mode, sort_order, minutes, id")
    return [tier_doc(r) for r in rows]


def tier_page(db: Database, position: dict[str, Any]) -> list[dict[str, Any]]:
    """Every tier, inactive ones included, in TIER_ORDER; `position` is TIER_ORDER.params(query)."""
    rows = db.fetch_all(_TIER_PAGE, position)
    return [tier_doc(r) for r in rows]


def create_tier(db: Database, body: dict[str, Any], changed_by: str) -> dict[str, Any]:
    with db.connection() as conn:  # an existing (mode, minutes) is TIER_EXISTS (lib/constraints.py)
        row = conn.execute(
            "INSERT INTO pricing_tiers (mode, minutes, price, label, sort_order) "
            "VALUES (%(mode)s, %(minutes)s, %(price)s, %(label)s, %(sort_order)s) RETURNING *",
            body,
        ).fetchone()
        assert row is not None
        _tier_history(conn, row, "create", None, changed_by)
    return tier_doc(row)


def update_tier(db: Database, tier_id: str, edit: dict[str, Any], changed_by: str) -> dict[str, Any]:
    """Apply `edit` only if the tier is still as the caller read it: `edit["updated_at"]` is the lock."""
    with db.connection() as conn:
        before = conn.execute("SELECT * FROM pricing_tiers WHERE id = %(tier_id)s", {"tier_id": tier_id}).fetchone()
        if before is None:
            raise NotFound()
        row = conn.execute(
            "UPDATE pricing_tiers SET label = COALESCE(%(label)s, label), price = COALESCE(%(price)s, price), "
            "sort_order = COALESCE(%(sort_order)s, sort_order), is_active = COALESCE(%(is_active)s, is_active), "
            "updated_at = date_trunc('milliseconds', clock_timestamp()) "
            "WHERE id = %(tier_id)s AND updated_at = %(seen)s RETURNING *",
            {**{f: edit.get(f) for f in TIER_FIELDS}, "tier_id": tier_id, "seen": edit["updated_at"]},
        ).fetchone()
        if row is None:
            raise Conflict(
                "The tier changed since you read it; reload and try again",
                code="STALE_WRITE",
                details={"current": tier_doc(before)},
            )
        kind = "update"
        if before["is_active"] != row["is_active"]:
            kind = "reactivate" if row["is_active"] else "deactivate"
        _tier_history(conn, row, kind, before, changed_by)
    return tier_doc(row)


def _tier_history(conn: Conn, row: dict[str, Any], kind: str, before: dict[str, Any] | None, by: str) -> None:
    conn.execute(
        "INSERT INTO pricing_tier_history (tier_id, kind, before, after, changed_by) "
        "VALUES (%(tier_id)s, %(kind)s, %(before)s, %(after)s, %(changed_by)s)",
        {
            "tier_id": row["id"],
            "kind": kind,
            "before": _json(tier_doc(before)) if before else None,
            "after": _json(tier_doc(row)),
            "changed_by": by,
        },
    )


def tier_history(db: Database, tier_id: str, position: dict[str, Any]) -> list[dict[str, Any]]:
    """A tier's changes in HISTORY_ORDER; `position` is HISTORY_ORDER.params(query)."""
    if db.fetch_one("SELECT 1 FROM pricing_tiers WHERE id = %(tier_id)s", {"tier_id": tier_id}) is None:
        raise NotFound()
    return db.fetch_all(_HISTORY, {"tier_id": tier_id, **position})


def first_session_discount(db: Database) -> dict[str, Any]:
    row = db.fetch_one("SELECT * FROM pricing_promotions WHERE kind = 'first_session'")
    assert row is not None  # seeded by migration
    return discount_doc(row)


def update_discount(db: Database, edit: dict[str, Any], changed_by: str) -> dict[str, Any]:
    """Same lock as tiers: `edit["updated_at"]` must be the version the caller read."""
    with db.connection() as conn:
        before = conn.execute("SELECT * FROM pricing_promotions WHERE kind = 'first_session'").fetchone()
        assert before is not None
        merged = {**discount_doc(before), **{k: v for k, v in edit.items() if k != "updated_at"}}
        if merged["discount_type"] == "percent" and not 0 <= merged["value"] <= 100:
            raise ValidationFailed({"value": ["A percentage must be between 0 and 100."]})
        row = conn.execute(
            "UPDATE pricing_promotions SET enabled = %(enabled)s, discount_type = %(discount_type)s, "
            "value = %(value)s, updated_at = date_trunc('milliseconds', clock_timestamp()) "
            "WHERE kind = 'first_session' AND updated_at = %(seen)s RETURNING *",
            {**merged, "seen": edit["updated_at"]},
        ).fetchone()
        if row is None:
            raise Conflict(
                "The discount changed since you read it; reload and try again",
                code="STALE_WRITE",
                details={"current": discount_doc(before)},
            )
        conn.execute(
            "INSERT INTO pricing_promotion_history (kind, before, after, changed_by) "
            "VALUES ('first_session', %(before)s, %(after)s, %(changed_by)s)",
            {"before": _json(discount_doc(before)), "after": _json(discount_doc(row)), "changed_by": changed_by},
        )
    return discount_doc(row)


def first_session_eligible(conn: Conn, customer_id: str) -> bool:
    """Eligible = no session of this customer ever reached `active` (pairing stamps the first)."""
    row = conn.execute(
        "SELECT first_active_session_at FROM customers WHERE id = %(customer_id)s", {"customer_id": customer_id}
    ).fetchone()
    return row is not None and row["first_active_session_at"] is None


@dataclass(frozen=True)
class Quote:
    tier: dict[str, Any]
    price: int
    discount: int

    @property
    def amount(self) -> int:
        return self.price - self.discount


def discount_for(price: int, promo: dict[str, Any]) -> int:
    if not promo["enabled"]:
        return 0
    if promo["discount_type"] == "percent":
        return min(price, price * int(promo["value"]) // 100)
    return min(price, int(promo["value"]))


def quote(conn: Conn, tier_id: str, customer_id: str, *, mode: str | None = None, allow_discount: bool = True) -> Quote:
    """What the customer pays for this tier: server-side, never from the app. Extensions pass
    allow_discount=False (they never get the first-session discount)."""
    tier = conn.execute(
        "SELECT * FROM pricing_tiers WHERE id = %(tier_id)s AND is_active", {"tier_id": tier_id}
    ).fetchone()
    if tier is None or (mode is not None and tier["mode"] != mode):
        raise ValidationFailed({"tier_id": ["Unknown or inactive tier."]}, code="TIER_NOT_FOUND")
    discount = 0
    if allow_discount and first_session_eligible(conn, customer_id):
        promo = conn.execute("SELECT * FROM pricing_promotions WHERE kind = 'first_session'").fetchone()
        assert promo is not None
        discount = discount_for(tier["price"], promo)
    return Quote(tier_doc(tier), tier["price"], discount)
