"""Change a bypass entry's code, note or expiry."""

from typing import Any

import falcon
from marshmallow import fields, validate

from functions._shapes import Bypass
from lib.auth.otp import hash_bypass_code
from lib.endpoint import Auth, Ctx, Endpoint
from lib.errors import NotFound
from lib.fields import Text
from lib.otp_bypass import CODE_RULE, ExpiryMixin, bypass_doc


class Body(ExpiryMixin):
    code = fields.String(validate=CODE_RULE)
    note = Text(validate=validate.Length(0, 200))


ENDPOINT = Endpoint(
    method="PATCH",
    route="/internal/otp-bypass/{entry_id:uuid}",
    auth=Auth.CC_USER,
    permission="config.write",
    body=Body,
    response=Bypass,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    b = ctx.body
    row = ctx.services.db.fetch_one(
        "UPDATE otp_bypass_entries SET code_hash = COALESCE(%(code_hash)s, code_hash), note = COALESCE(%(note)s, note), "
        "expires_at = COALESCE(%(expires_at)s, expires_at), updated_at = now() WHERE id = %(entry_id)s RETURNING *",
        {
            "code_hash": hash_bypass_code(b["code"]) if "code" in b else None,
            "note": b.get("note"),
            "expires_at": b.get("expires_at"),
            "entry_id": ctx.params["entry_id"],
        },
    )
    if row is None:
        raise NotFound()
    return bypass_doc(row)
