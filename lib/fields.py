"""Marshmallow fields shared by endpoint schemas."""

from __future__ import annotations

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


class Text(fields.String):
    """A string stored without its surrounding whitespace, and validated as it will be stored
    (normalise first, then check): "   " is blank, and None where None is allowed."""

    def deserialize(self, value: Any, attr: str | None = None, data: Any = None, **kwargs: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if not value and self.allow_none:
                value = None
        return super().deserialize(value, attr, data, **kwargs)


class ReasonBody(Schema):
    """The body of an audited control-center action on a person's data: why (3..500 characters)."""

    reason = Text(required=True, validate=validate.Length(3, 500))
