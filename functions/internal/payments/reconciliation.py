"""The reconciliation's proof for operators: every invoice Xendit reported paid in the window, in
exactly one place (a consumed session or extension, a refund due or done), what is in flight, what
is in no place or in two, and the totals per day (as `python -m runtime money-check` prints)."""

import re
from typing import Any

import falcon
from marshmallow import Schema, ValidationError, fields, validate

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


ENDPOINT = Endpoint(
    method="GET",
    route="/internal/payments/reconciliation",
    auth=Auth.CC_USER,
    permission="payments.read",
    query=Query,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    return report(ctx.services.db, ctx.query["days"]).doc()
