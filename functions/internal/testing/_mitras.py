"""What the mitra fixtures share: a body naming one mitra by id or by phone, its lookup, and the
online switch through the real presence path."""

from typing import Any

from marshmallow import Schema, ValidationError, fields, validates_schema

from lib.db import Database
from lib.endpoint import Ctx
from lib.errors import NotFound
from lib.fields import PhoneField


class MitraRef(Schema):
    """`{"mitra_id": "<uuid>"}` or `{"phone": "+62..."}` (08... and 62... are accepted): exactly one."""

    mitra_id = fields.UUID(load_default=None)
    phone = PhoneField(load_default=None)

    @validates_schema
    def _one_of(self, data: dict[str, Any], **_: Any) -> None:
        if (data.get("mitra_id") is None) == (data.get("phone") is None):
            raise ValidationError("Name the mitra by mitra_id or by phone (exactly one).", "_schema")


def mitra_id_of(db: Database, body: dict[str, Any]) -> str:
    """The id of the mitra the body names; 404 when there is none."""
    row = db.fetch_one(
        "SELECT id FROM mitras WHERE id = %(mitra_id)s OR phone = %(phone)s",
        {"mitra_id": body.get("mitra_id"), "phone": body.get("phone")},
    )
    if row is None:
        raise NotFound("No mitra has this id or phone", code="MITRA_NOT_FOUND")
    return str(row["id"])


def switch(ctx: Ctx, online: bool) -> dict[str, Any]:
    """Set the named mitra online or offline as its app's own switch does: PostgreSQL (state and
    online log) first, then the Valkey mirror; going online counts as a fresh heartbeat."""
    s = ctx.services
    mitra_id = mitra_id_of(s.db, ctx.body)
    changed = s.presence.set_online(mitra_id, online)
    status = s.presence.status(mitra_id)
    return {"mitra_id": mitra_id, "changed": changed, **status}
