"""The reconciliation's proof for operators: every invoice Xendit reported paid in the window, in
exactly one place (a consumed session or extension, a refund due or done), what is in flight, what
is in no place or in two, and the totals per day (as `python -m runtime money-check` prints)."""

import re
from typing import Any

import falcon
from marshmallow import Schema, ValidationError, fields, validate

from functions._shapes import Id, Time, nullable
from lib.endpoint import Auth, Ctx, Endpoint
from lib.payments.reconciliation import WINDOW_DAYS, report

_DAYS = re.compile(r"[0-9]{1,3}")  # ASCII digits only: int() also reads other scripts' digits


class Days(fields.Integer):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if not isinstance(value, str) or not _DAYS.fullmatch(value):
            raise ValidationError("Must be a whole number of days.")
        return int(value)


class Query(Schema):
    days = Days(load_default=WINDOW_DAYS, validate=validate.Range(1, 90))


class Sum(Schema):
    count = fields.Integer()
    amount = fields.Integer()


class Accounted(Schema):
    session = fields.Integer()
    extension = fields.Integer()
    refund_due = fields.Integer()
    refund_done = fields.Integer()


class Problem(Schema):
    payment_request_id = Id()
    invoice_id = nullable(fields.String)
    amount = fields.Integer()
    currency = fields.String()
    seen_at = Time()
    source = nullable(fields.String)
    request_status = fields.String()
    kind = fields.String()
    found_in = fields.List(fields.String())
    problem = fields.String()


class Day(Schema):
    day = fields.Date()
    paid = fields.Nested(Sum)
    session = fields.Nested(Sum)
    extension = fields.Nested(Sum)
    refund_due = fields.Nested(Sum)
    refund_done = fields.Nested(Sum)
    in_flight = fields.Nested(Sum)
    unaccounted = fields.Nested(Sum)


class RefundsDue(Sum):
    oldest_created_at = nullable(Time)


class Reconciliation(Schema):
    generated_at = Time()
    since = Time()
    ok = fields.Boolean()
    invoices = fields.Integer()
    accounted = fields.Nested(Accounted)
    in_flight = fields.List(fields.Dict())
    problems = fields.List(fields.Nested(Problem))
    problem_counts = fields.Dict(keys=fields.String(), values=fields.Integer())
    days = fields.List(fields.Nested(Day))
    refunds_due = fields.Nested(RefundsDue)


ENDPOINT = Endpoint(
    method="GET",
    route="/internal/payments/reconciliation",
    auth=Auth.CC_USER,
    permission="payments.read",
    query=Query,
    response=Reconciliation,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    return report(ctx.services.db, ctx.query["days"]).doc()
