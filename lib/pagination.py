"""Cursor pagination: opaque, stable under inserts (keyset on created_at, id), limit clamped 1..100."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from marshmallow import Schema, fields, pre_load

from lib.errors import ValidationFailed

DEFAULT_LIMIT, MAX_LIMIT = 20, 100


class PageQuery(Schema):
    cursor = fields.String(load_default=None)
    limit = fields.Integer(load_default=DEFAULT_LIMIT)

    @pre_load
    def _clamp(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        raw = data.get("limit")
        if isinstance(raw, str) and raw.lstrip("-").isdigit():
            data = {**data, "limit": str(min(MAX_LIMIT, max(1, int(raw))))}
        return data


def encode_cursor(row: dict[str, Any], time_field: str = "created_at") -> str:
    raw = json.dumps([row[time_field].isoformat(), str(row["id"])]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    try:
        created, ident = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(created), str(ident)
    except (ValueError, TypeError) as exc:
        raise ValidationFailed({"cursor": ["Invalid cursor."]}) from exc


def keyset(query: Mapping[str, Any]) -> dict[str, Any]:
    """SQL parameters for `(%(c)s::timestamptz IS NULL OR (t, id) < (%(c)s, %(i)s))` and `LIMIT %(n)s`:
    the position after the cursor's row, and one row more than asked (to tell has_more)."""
    after = decode_cursor(query["cursor"])
    return {"c": after[0] if after else None, "i": after[1] if after else None, "n": query["limit"] + 1}


def page(rows: list[dict[str, Any]], limit: int, doc: Any = None, time_field: str = "created_at") -> dict[str, Any]:
    """Callers fetch limit + 1 rows, newest first; the extra row only says there is more."""
    has_more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [doc(r) if doc else r for r in rows],
        "next_cursor": encode_cursor(rows[-1], time_field) if has_more and rows else None,
        "has_more": has_more,
    }
