"""The API's JSON: the shapes the contract fixes, and byte-for-byte what the standard library wrote."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from lib.jsonenc import _default, dumps

AT = datetime(2026, 12, 1, 23, 19, 5, 123456, tzinfo=UTC)


def test_the_contract_shapes() -> None:
    doc = {"at": AT, "day": date(2026, 12, 1), "id": uuid.UUID(int=1), "amount": Decimal("25000.00")}
    assert json.loads(dumps(doc)) == {
        "at": "2026-12-01T23:19:05.123Z",
        "day": "2026-12-01",
        "id": "00000000-0000-0000-0000-000000000001",
        "amount": 25000,
    }


@pytest.mark.parametrize(
    "value",
    [
        {"success": True, "data": {"available": True, "count": 1}},
        {"name": "Bestie 💜 ramah", "n": None, "f": 1.5, "big": 2**53, "neg": -3},
        {"when": AT.astimezone(timezone(timedelta(hours=7))), "whole": AT.replace(microsecond=0)},
        {"ratio": Decimal("0.25"), "tags": ("a", "b"), "set": frozenset({"x"}), "nested": [[{"k": []}]]},
    ],
)
def test_same_bytes_as_the_standard_library(value: object) -> None:
    reference = json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":")).encode()
    assert dumps(value) == reference


def test_unknown_types_are_refused() -> None:
    with pytest.raises(TypeError):
        dumps({"x": object()})
