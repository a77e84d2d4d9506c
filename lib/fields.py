"""Marshmallow fields shared by endpoint schemas."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from lib.auth.otp import normalize_phone
from lib.errors import ApiError


class PhoneField(fields.String):
    """An Indonesian phone number, normalised to E.164 (+62...) on load."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        raw = super()._deserialize(value, attr, data, **kwargs)
        try:
            return normalize_phone(raw)
        except ApiError as exc:
            raise ValidationError("Must be an Indonesian number in E.164 form.") from exc


# Characters that show nothing: what str.strip() removes, and the format characters and fillers it
# keeps (zero-width space and joiners, BOM, word joiner, Hangul fillers, the braille blank).
_INVISIBLE = "".join(
    {chr(c) for c in (0x115F, 0x1160, 0x2800, 0x3164, 0xFFA0)}
    | {chr(c) for c in range(0x200B, 0x2010)}
    | {chr(c) for c in range(0x2060, 0x2065)}
    | {"\ufeff", "\u180e", "\u00ad"}
)


_ENDS = re.compile(f"^[\\s{_INVISIBLE}]+|[\\s{_INVISIBLE}]+$")


def visible(text: str) -> int:
    """How many characters of `text` show something."""
    return sum(1 for c in text if not c.isspace() and c not in _INVISIBLE)


class Text(fields.String):
    """A string stored in NFC without the blank and invisible characters around it, validated as it
    will be stored (normalise first, then check): "   " or "\u200b" is blank, and None where None
    is allowed. `min_visible` counts only characters that show something."""

    def __init__(self, *args: Any, min_visible: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.min_visible = min_visible

    def deserialize(self, value: Any, attr: str | None = None, data: Any = None, **kwargs: Any) -> Any:
        if isinstance(value, str):
            value = _ENDS.sub("", unicodedata.normalize("NFC", value))
            if not value and self.allow_none:
                value = None
        loaded = super().deserialize(value, attr, data, **kwargs)
        if isinstance(loaded, str) and loaded and visible(loaded) < self.min_visible:
            raise ValidationError(f"Must show at least {self.min_visible} visible character(s).")
        return loaded


class ReasonBody(Schema):
    """The body of an audited control-center action on a person's data: why (3..500 characters)."""

    reason = Text(required=True, min_visible=3, validate=validate.Length(3, 500))
