"""Marshmallow fields shared by endpoint schemas."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields

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
