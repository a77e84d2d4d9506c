"""One customer with their identities (no secrets) and a summary of sessions and payments."""

from typing import Any

import falcon
from marshmallow import Schema, fields

from functions._shapes import Customer, Id, Time, nullable
from lib.customers import customer_record
from lib.endpoint import Auth, Ctx, Endpoint


class Identity(Schema):
    provider = fields.String()
    subject = fields.String()
    email = nullable(fields.String)
    created_at = Time()


class CustomerRecord(Customer):
    account_belongs_to = nullable(Id)
    first_active_session_at = nullable(Time)
    last_login_at = nullable(Time)
    identities = fields.List(fields.Nested(Identity))
    sessions = fields.Integer()
    last_session_at = nullable(Time)
    payments = fields.Integer()
    paid_total = fields.Integer()


ENDPOINT = Endpoint(
    method="GET",
    route="/internal/customers/{customer_id:uuid}",
    auth=Auth.CC_USER,
    permission="customers.read",
    response=CustomerRecord,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    return customer_record(ctx.services.db, str(ctx.params["customer_id"]))
