"""Cursor pagination for every list (API.md): `?cursor=&limit=` -> {items, next_cursor, has_more}.

Keyset, not offset: the cursor holds the sort-key values of the last row returned, so pages stay
stable under inserts. Cursors are opaque to clients but only base64 JSON, so every value is
checked against the column's kind before it reaches SQL (a forged cursor is a 422, never a 500).
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from lib import inputs
from lib.errors import ApiError, ValidationFailed
from lib.jsonenc import dumps

DEFAULT_LIMIT, MAX_LIMIT = 20, 100
MAX_CURSOR = 512  # characters: a cursor we wrote is well under 200
_DIGITS = re.compile(r"-?[0-9]{1,12}")  # ASCII only: int() also reads "٣" and 4,300-digit numbers


class Limit(fields.Integer):
    """A page size: ASCII digits, clamped to 1..MAX_LIMIT (a client asking too much gets the most)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if not isinstance(value, str) or not _DIGITS.fullmatch(value):
            raise ValidationError("Must be a whole number.")
        return min(MAX_LIMIT, max(1, int(value)))


class PageQuery(Schema):
    """The query of every list endpoint; a list's own filters subclass it."""

    cursor = fields.String(load_default=None, validate=validate.Length(max=MAX_CURSOR))
    limit = Limit(load_default=DEFAULT_LIMIT)


def _time(value: Any) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("naive time")
    return parsed


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("not an integer")
    return value  # within 64 bits: inputs.parse_json checked


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("not a string")
    return value  # storable: inputs.parse_json checked


# column kind -> (load a cursor value, dump a row value)
_KINDS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "time": (_time, lambda v: v.isoformat()),
    "uuid": (lambda v: uuid.UUID(_text(v)), str),
    "int": (_int, int),
    "text": (_text, str),
}


class Keyset:
    """A list's order: columns that are unique together (the id last), all in one direction.

    The handler's SQL compares the row value with the cursor's, e.g. for ``Keyset(("created_at",
    "time"), ("id", "uuid"))``: ``(%(k0)s::timestamptz IS NULL OR (created_at, id) < (%(k0)s,
    %(k1)s)) ORDER BY created_at DESC, id DESC LIMIT %(n)s``.
    """

    def __init__(self, *columns: tuple[str, str], descending: bool = True) -> None:
        unknown = [kind for _, kind in columns if kind not in _KINDS]
        if not columns or unknown:
            raise ValueError(f"columns need a kind among {sorted(_KINDS)}")
        self.columns = columns
        self.descending = descending

    def params(self, query: Mapping[str, Any]) -> dict[str, Any]:
        """SQL parameters k0..kN (the cursor row's values, or None for the first page) and n, one
        row more than asked, to tell whether there is more."""
        values = self._decode(query["cursor"]) if query["cursor"] else [None] * len(self.columns)
        return {**{f"k{i}": v for i, v in enumerate(values)}, "n": query["limit"] + 1}

    def page(self, rows: list[dict[str, Any]], limit: int, doc: Callable[[Any], Any] | None = None) -> dict[str, Any]:
        has_more = len(rows) > limit
        rows = rows[:limit]
        return {
            "items": [doc(r) if doc else r for r in rows],
            "next_cursor": self._encode(rows[-1]) if has_more and rows else None,
            "has_more": has_more,
        }

    def _encode(self, row: Mapping[str, Any]) -> str:
        values = [_KINDS[kind][1](row[name]) for name, kind in self.columns]
        return base64.urlsafe_b64encode(dumps(values)).decode().rstrip("=")

    def _decode(self, cursor: str) -> list[Any]:
        """The cursor's values, each checked against its column's kind; anything else is a 422
        (a forged cursor is bounded in size by PageQuery and in depth and numbers by inputs)."""
        try:
            values = inputs.parse_json(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            if not isinstance(values, list) or len(values) != len(self.columns):
                raise ValueError("wrong shape")
            return [_KINDS[kind][0](v) for (_, kind), v in zip(self.columns, values, strict=True)]
        except (ApiError, ValueError, TypeError, binascii.Error) as exc:
            raise ValidationFailed({"cursor": ["Invalid cursor."]}) from exc


# The usual order: newest first by creation time, the id breaking ties.
NEWEST = Keyset(("created_at", "time"), ("id", "uuid"))
NEWEST_SERIAL = Keyset(("created_at", "time"), ("id", "int"))  # tables with bigserial ids
