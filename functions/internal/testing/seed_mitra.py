"""Development only: create (or reset) the mitra with a phone: name, active, online; signs it in when active."""

from typing import Any

import falcon
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from functions._shapes import Id, MitraTokenPair, Time, nullable
from lib.endpoint import Auth, Ctx, Endpoint, Reply
from lib.fields import PhoneField, Text
from lib.mitras import create_mitra, get_mitra, update_mitra


class Body(Schema):
    """The mitra as it should be after the call. The phone is the key: an existing mitra with it is
    reused (renamed, re-activated or deactivated, set online or offline), never duplicated."""

    phone = PhoneField(required=True)
    display_name = Text(required=True, validate=validate.Length(1, 60))
    is_active = fields.Boolean(load_default=True)
    online = fields.Boolean(load_default=False)

    @validates_schema
    def _online_needs_active(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("online") and not data.get("is_active", True):
            raise ValidationError("An inactive mitra cannot be online.", "online")


class SeededMitra(MitraTokenPair):
    """Tokens only when asked for (else null)."""

    mitra_id = Id()
    created = fields.Boolean()
    access_token = nullable(fields.String)
    access_token_expires_at = nullable(Time)
    token_type = nullable(fields.String)
    refresh_token = nullable(fields.String)
    refresh_token_expires_at = nullable(Time)


ENDPOINT = Endpoint(
    method="POST",
    route="/internal/_test/seed-mitra",
    auth=Auth.NONE,
    body=Body,
    status=201,
    dev_only=True,
    response=SeededMitra,
)

_NO_TOKENS = dict.fromkeys(
    ("access_token", "access_token_expires_at", "refresh_token", "refresh_token_expires_at", "token_type")
)


def handle(req: falcon.Request, ctx: Ctx) -> Reply:
    s, body = ctx.services, ctx.body
    existing = s.db.fetch_one("SELECT id, is_active FROM mitras WHERE phone = %(phone)s", {"phone": body["phone"]})
    if existing is None:
        mitra_id, was_active = str(create_mitra(s.db, body["phone"], body["display_name"])["id"]), True
    else:
        mitra_id, was_active = str(existing["id"]), existing["is_active"]
        update_mitra(s.db, mitra_id, {"display_name": body["display_name"]})
    if body["is_active"] != was_active:
        # The control center's own switch: deactivation also sets it offline and revokes its sessions.
        s.presence.set_active(mitra_id, body["is_active"])
    if body["is_active"]:
        if body["online"] or get_mitra(s.db, mitra_id)["is_online"]:  # a new offline mitra gets no log row
            s.presence.set_online(mitra_id, body["online"])
        tokens = s.accounts.sign_in_mitra(body["phone"])  # the OTP verify's sign-in
    else:
        tokens = {**_NO_TOKENS, "user_type": "mitra"}  # an inactive mitra cannot sign in
    data = {"mitra_id": mitra_id, "created": existing is None, **tokens, "user": get_mitra(s.db, mitra_id)}
    return Reply(201 if existing is None else 200, data)
