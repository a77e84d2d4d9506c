"""Development only: forget a phone's OTP requests (its cooldown and hourly limit) and its customer identity link."""

from typing import Any

import falcon
from marshmallow import Schema, fields

from functions._shapes import Id, nullable
from lib.endpoint import Auth, Ctx, Endpoint
from lib.fields import PhoneField


class Body(Schema):
    """The phone (+62..., 08... and 62... are accepted)."""

    phone = PhoneField(required=True)


class Deleted(Schema):
    otp_requests = fields.Integer()
    phone_identities = fields.Integer()


class PhoneReset(Schema):
    phone = fields.String()
    deleted = fields.Nested(Deleted)
    customers_detached = fields.List(Id())
    mitra_id = nullable(Id)


ENDPOINT = Endpoint(
    method="POST", route="/internal/_test/reset-phone", auth=Auth.NONE, body=Body, dev_only=True, response=PhoneReset
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    phone = ctx.body["phone"]
    with ctx.services.db.connection() as conn:
        # Every code request for the number, both flows: the cooldown, the hourly count and open codes
        # are all counted from these rows (lib/auth/otp.py).
        otp = conn.execute("DELETE FROM otp_requests WHERE phone = %(phone)s", {"phone": phone}).rowcount
        unlinked = conn.execute(
            "DELETE FROM customer_identities WHERE provider = 'phone' AND subject = %(phone)s RETURNING customer_id",
            {"phone": phone},
        ).fetchall()
        # The account that held the number keeps its history and sessions, without the number; with
        # no identity left it is anonymous again. The phone can now sign up as a new customer.
        detached = conn.execute(
            "UPDATE customers c SET phone = NULL, updated_at = now(), is_anonymous = NOT EXISTS "
            "(SELECT 1 FROM customer_identities i WHERE i.customer_id = c.id) "
            "WHERE c.phone = %(phone)s OR c.id = ANY(%(customer_ids)s) RETURNING c.id",
            {"phone": phone, "customer_ids": [r["customer_id"] for r in unlinked]},
        ).fetchall()
        mitra = conn.execute("SELECT id FROM mitras WHERE phone = %(phone)s", {"phone": phone}).fetchone()
    return {
        "phone": phone,
        "deleted": {"otp_requests": otp, "phone_identities": len(unlinked)},
        "customers_detached": [r["id"] for r in detached],
        "mitra_id": mitra["id"] if mitra else None,  # a mitra's number is its account: kept as it is
    }
