"""Mitra records for the control center: create, search, edit."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from lib.auth.accounts import mitra_doc
from lib.db import Database, contains
from lib.errors import NotFound
from lib.pagination import NEWEST


def get_mitra(db: Database, mitra_id: str) -> dict[str, Any]:
    row = db.fetch_one(
        "SELECT m.*, COALESCE(s.is_online, false) AS is_online FROM mitras m "
        "LEFT JOIN mitra_online_status s ON s.mitra_id = m.id WHERE m.id = %(mitra_id)s",
        {"mitra_id": mitra_id},
    )
    if row is None:
        raise NotFound()
    return mitra_doc(row)


def create_mitra(db: Database, phone: str, display_name: str) -> dict[str, Any]:
    row = db.fetch_one(  # a taken phone is PHONE_TAKEN (lib/constraints.py)
        "INSERT INTO mitras (phone, display_name) VALUES (%(phone)s, %(display_name)s) RETURNING id",
        {"phone": phone, "display_name": display_name},
    )
    assert row is not None
    return get_mitra(db, str(row["id"]))


def update_mitra(db: Database, mitra_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    row = db.fetch_one(
        "UPDATE mitras SET phone = COALESCE(%(phone)s, phone), display_name = COALESCE(%(display_name)s, display_name), "
        "updated_at = now() WHERE id = %(mitra_id)s RETURNING id",
        {"phone": changes.get("phone"), "display_name": changes.get("display_name"), "mitra_id": mitra_id},
    )
    if row is None:
        raise NotFound()
    return get_mitra(db, mitra_id)


_SEARCH = sql.SQL(
    "SELECT m.*, COALESCE(s.is_online, false) AS is_online FROM mitras m "
    "LEFT JOIN mitra_online_status s ON s.mitra_id = m.id "
    "WHERE (%(search)s::text IS NULL OR m.display_name ILIKE %(like)s OR m.phone LIKE %(like)s) "
    "AND (%(online)s::boolean IS NULL OR COALESCE(s.is_online, false) = %(online)s) "
    "AND {after} ORDER BY {order} LIMIT %(limit)s"
).format(after=NEWEST.after("m"), order=NEWEST.order("m"))


def search_mitras(
    db: Database, *, q: str | None, online: bool | None, position: dict[str, Any]
) -> list[dict[str, Any]]:
    """Newest first; `position` is lib.pagination.NEWEST.params(query) (cursor and limit + 1)."""
    return db.fetch_all(_SEARCH, {"search": q, "like": contains(q), "online": online, **position})
