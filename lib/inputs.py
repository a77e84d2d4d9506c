"""The one rule set for what a client sends, on every surface (REST bodies, query strings, path
parameters, the headers handlers read, WebSocket frames): JSON nested at most MAX_DEPTH deep, and
text that PostgreSQL and UTF-8 can store (no NUL, no lone surrogate such as the JSON escape
"\\ud800"). A value that breaks a rule is refused here, before any handler, schema or batch sees
it, so it can neither reach SQL nor share a batch with other users' input (docs/limits.md)."""

from __future__ import annotations

import json
import math
from typing import Any

from lib.errors import BadRequest, ValidationFailed

MAX_DEPTH = 32
MAX_INT = 2**63 - 1  # PostgreSQL's bigint: a larger number could only overflow in SQL
UNSTORABLE = "NUL characters and lone surrogates are not allowed."
OUT_OF_RANGE = "Numbers must be finite and within 64 bits."


def storable(text: str) -> bool:
    """True when PostgreSQL can store `text` as it is (no NUL) and UTF-8 can encode it."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def safe_name(text: str) -> str:
    """`text` fit to echo in an error (a field name, a type): unencodable characters replaced."""
    return text if storable(text) else text.encode("utf-8", "replace").decode().replace("\x00", "?")


# Where a value sits, built only when a rule fails: (parent, key or index). Building every path as
# the walk went held ~470 MB for one 64 KiB body (a 40 KB key over 12,700 list items).
_Where = tuple["_Where | None", "str | int"] | None
MAX_PATH = 200  # characters of a field's path an error names


def _path(where: _Where, root: str) -> str:
    parts: list[str] = []
    while where is not None:
        where, key = where
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    path = root + "".join(reversed(parts))
    path = path[1:] if path.startswith(".") else path
    return (path[:MAX_PATH] + "...") if len(path) > MAX_PATH else path or "_schema"


def check(data: Any, where: str = "") -> None:
    """Refuse nesting deeper than MAX_DEPTH (400), unstorable text in any key or value, and numbers
    beyond 64 bits or not finite (422, naming the field where that is safe), in one pass."""
    stack: list[tuple[Any, int, _Where]] = [(data, 1, None)]
    while stack:
        value, depth, at = stack.pop()
        if depth > MAX_DEPTH:
            raise BadRequest(f"JSON nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, str):
            if not storable(value):
                raise ValidationFailed({_path(at, where): [UNSTORABLE]})
        elif isinstance(value, dict):
            for key, item in value.items():
                if not storable(key):
                    raise ValidationFailed({_path(at, where): [UNSTORABLE]})
                stack.append((item, depth + 1, (at, key)))
        elif isinstance(value, list):
            stack.extend((item, depth + 1, (at, i)) for i, item in enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            if not -MAX_INT - 1 <= value <= MAX_INT:
                raise ValidationFailed({_path(at, where): [OUT_OF_RANGE]})
        elif isinstance(value, float) and not math.isfinite(value):  # json.loads reads NaN and Infinity
            raise ValidationFailed({_path(at, where): [OUT_OF_RANGE]})


def parse_json(raw: bytes | str) -> Any:
    """JSON text that passes `check`, or BadRequest / ValidationFailed. Numbers stay bounded by
    the parser: an integer of more than 4,300 digits is malformed JSON, not a 500."""
    try:
        data = json.loads(raw)
    except RecursionError as exc:
        raise BadRequest("JSON nested too deeply") from exc
    except ValueError as exc:  # UnicodeDecodeError and the digit limit are ValueErrors too
        raise BadRequest("Malformed JSON") from exc
    check(data)
    return data


def check_params(params: dict[str, Any], where: str = "") -> None:
    """Query-string or path parameters: each text value storable."""
    for key, value in params.items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            if (isinstance(item, str) and not storable(item)) or not storable(key):
                raise ValidationFailed({safe_name(key) or where or "_schema": [UNSTORABLE]})


def scrub(value: Any) -> Any:
    """A copy of `value` (an error body) that any JSON encoder can write: unencodable text replaced."""
    if isinstance(value, str):
        return safe_name(value)
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value
