"""The app-store reviewers' bypass list: phone + static code (hashed) + expiry, behind a kill switch."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates

CODE_RULE = validate.Regexp(r"^[0-9]{6}$", error="Must be 6 digits.")


def bypass_doc(row: dict[str, Any]) -> dict[str, Any]:
    # The code itself is never shown again: only its hash is stored.
    return {
        "id": row["id"],
        "phone": row["phone"],
        "note": row["note"],
        "expires_at": row["expires_at"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


class ExpiryMixin(Schema):
    expires_at = fields.AwareDateTime()

    @validates("expires_at")
    def _future(self, value: Any, **_: Any) -> None:
        if value is not None and value <= datetime.now(UTC):
            raise ValidationError("Must be in the future.")
