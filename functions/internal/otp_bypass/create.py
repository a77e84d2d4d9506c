"""Add a bypass entry: a phone, its static 6-digit code (stored hashed) and an expiry."""

import falcon
from marshmallow import fields, validate

from functions._shapes import Bypass
from lib.auth.otp import hash_bypass_code
from lib.endpoint import Auth, Ctx, Endpoint, Reply
from lib.fields import PhoneField, Text
from lib.otp_bypass import CODE_RULE, ExpiryMixin, bypass_doc


class Body(ExpiryMixin):
    phone = PhoneField(required=True)
    code = fields.String(required=True, validate=CODE_RULE)
    note = Text(load_default="", validate=validate.Length(0, 200))
    expires_at = fields.AwareDateTime(required=True)


ENDPOINT = Endpoint(
    method="POST",
    route="/internal/otp-bypass",
    auth=Auth.CC_USER,
    permission="config.write",
    body=Body,
    status=201,
    response=Bypass,
)


def handle(req: falcon.Request, ctx: Ctx) -> Reply:
    assert ctx.principal is not None
    b = ctx.body
    row = ctx.services.db.fetch_one(
        "INSERT INTO otp_bypass_entries (phone, code_hash, note, expires_at, created_by) "
        "VALUES (%(phone)s, %(code_hash)s, %(note)s, %(expires_at)s, %(created_by)s) RETURNING *",  # a listed phone is BYPASS_EXISTS
        {
            "phone": b["phone"],
            "code_hash": hash_bypass_code(b["code"]),
            "note": b["note"],
            "expires_at": b["expires_at"],
            "created_by": ctx.principal.user_id,
        },
    )
    assert row is not None
    return Reply(201, bypass_doc(row))
