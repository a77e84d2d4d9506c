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
from psycopg import sql

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


# column kind -> (load a cursor value, dump a row value, the SQL type its parameter is cast to)
_KINDS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any], sql.SQL]] = {
    "time": (_time, lambda v: v.isoformat(), sql.SQL("timestamptz")),
    "uuid": (lambda v: uuid.UUID(_text(v)), str, sql.SQL("uuid")),
    "int": (_int, int, sql.SQL("bigint")),
    "text": (_text, str, sql.SQL("text")),
}


class Keyset:
    """A list's order: columns that are unique together (the id last), all in one direction.

    A list query takes its predicate and order from here, so the two cannot disagree with the
    cursor: ``sql.SQL("... WHERE {after} ORDER BY {order} LIMIT %(limit)s").format(after=NEWEST.after("s"),
    order=NEWEST.order("s"))``, run with ``NEWEST.params(query)``. For ``NEWEST`` that reads
    ``("s"."created_at", "s"."id") < (%(after_created_at)s, %(after_id)s)``, true on the first page.
    """

    def __init__(self, *columns: tuple[str, str], descending: bool = True) -> None:
        unknown = [kind for _, kind in columns if kind not in _KINDS]
        if not columns or unknown:
            raise ValueError(f"columns need a kind among {sorted(_KINDS)}")
        self.columns = columns
        self.descending = descending

    def params(self, query: Mapping[str, Any]) -> dict[str, Any]:
        """SQL parameters after_<column> (the cursor row's values, or None for the first page) and
        limit, one row more than asked, to tell whether there is more."""
        if not query["cursor"]:
            return self.first(query["limit"] + 1)
        values = self._decode(query["cursor"])
        return {
            **{_param(name): v for (name, _), v in zip(self.columns, values, strict=True)},
            "limit": query["limit"] + 1,
        }

    def first(self, limit: int | None = None) -> dict[str, Any]:
        """SQL parameters of the first `limit` rows (None: every row), for a caller without a cursor."""
        return {**{_param(name): None for name, _ in self.columns}, "limit": limit}

    def after(self, alias: str | None = None, **exprs: sql.Composable) -> sql.Composed:
        """The predicate "this row comes after the cursor's" over the columns of table `alias`
        (a column named in `exprs` is that expression instead, e.g. a COALESCE); true when the
        cursor's values are NULL, as on the first page."""
        keys = sql.SQL(", ").join(self._keys(alias, exprs))
        values = sql.SQL(", ").join(
            sql.SQL("{}::{}").format(sql.Placeholder(_param(name)), _KINDS[kind][2]) for name, kind in self.columns
        )
        first_name, first_kind = self.columns[0]
        return sql.SQL("({first}::{kind} IS NULL OR ({keys}) {op} ({values}))").format(
            first=sql.Placeholder(_param(first_name)),
            kind=_KINDS[first_kind][2],
            keys=keys,
            op=sql.SQL("<" if self.descending else ">"),
            values=values,
        )

    def order(self, alias: str | None = None, **exprs: sql.Composable) -> sql.Composed:
        """The ORDER BY list (without the keywords) matching `after` for the same alias and exprs."""
        direction = sql.SQL(" DESC" if self.descending else "")
        return sql.SQL(", ").join(sql.Composed([key, direction]) for key in self._keys(alias, exprs))

    def _keys(self, alias: str | None, exprs: Mapping[str, sql.Composable]) -> list[sql.Composable]:
        unknown = set(exprs) - {name for name, _ in self.columns}
        if unknown:
            raise ValueError(f"not a column of this keyset: {sorted(unknown)}")
        names = [name for name, _ in self.columns]
        return [exprs.get(name) or (sql.Identifier(alias, name) if alias else sql.Identifier(name)) for name in names]

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


def _param(column: str) -> str:
    return f"after_{column}"


# The usual order: newest first by creation time, the id breaking ties.
NEWEST = Keyset(("created_at", "time"), ("id", "uuid"))
NEWEST_SERIAL = Keyset(("created_at", "time"), ("id", "int"))  # tables with bigserial ids
