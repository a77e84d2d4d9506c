"""Development only: create a customer (anonymous, or verified by phone) and sign it in: a token pair as sign-in gives."""

import falcon
from marshmallow import Schema, validate

from functions._shapes import CustomerTokenPair, Id
from lib.auth.accounts import load_account
from lib.auth.flows import sign_in, token_pair
from lib.auth.identity import resolve_customer
from lib.endpoint import Auth, Ctx, Endpoint, Reply
from lib.errors import Conflict
from lib.fields import PhoneField, Text


class Body(Schema):
    """Both optional: no phone is an anonymous customer (the app's first launch); a phone is a
    customer who verified it (the anonymous account upgraded in place, as OTP verify does)."""

    phone = PhoneField(load_default=None, allow_none=True)
    display_name = Text(load_default=None, allow_none=True, validate=validate.Length(1, 40))


class SeededCustomer(CustomerTokenPair):
    customer_id = Id()


ENDPOINT = Endpoint(
    method="POST",
    route="/internal/_test/seed-customer",
    auth=Auth.NONE,
    body=Body,
    status=201,
    dev_only=True,
    response=SeededCustomer,
)


class PhoneTaken(Conflict):
    code, message = "PHONE_TAKEN", "A customer already holds this phone; POST /internal/_test/reset-phone first"


def handle(req: falcon.Request, ctx: Ctx) -> Reply:
    s = ctx.services
    phone = ctx.body["phone"]
    with s.db.connection() as conn:
        if phone is not None:
            taken = conn.execute(
                "SELECT 1 FROM customer_identities WHERE provider = 'phone' AND subject = %(phone)s "
                "UNION ALL SELECT 1 FROM customers WHERE phone = %(phone)s",
                {"phone": phone},
            ).fetchone()
            if taken is not None:
                raise PhoneTaken()
        row = conn.execute(
            "INSERT INTO customers (display_name, last_login_at) VALUES (%(display_name)s, now()) RETURNING id",
            {"display_name": ctx.body["display_name"]},
        ).fetchone()
        assert row is not None
        customer_id = str(row["id"])
        if (
            phone is not None
            and resolve_customer(conn, "phone", phone, caller_id=customer_id, phone=phone) != customer_id
        ):
            raise PhoneTaken()  # someone took the phone a moment ago: this transaction (and row) rolls back
        grant = sign_in(conn, s.settings, "customer", customer_id)
        account = load_account(conn, "customer", customer_id)
    assert account is not None
    return Reply(201, {"customer_id": customer_id, **token_pair(s.settings, grant, account)})
