"""Refunds due (paid invoices that bought nothing, waiting for a person to send the money back) or
done, newest first."""

from typing import Any

import falcon
from marshmallow import fields, validate
from psycopg import sql

from functions._shapes import Refund
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pagination import Keyset, PageQuery
from lib.payments.refunds import refund_doc

ORDER = Keyset(("created_at", "time"), ("id", "uuid"))


class Query(PageQuery):
    status = fields.String(load_default="due", validate=validate.OneOf(["due", "done"]))


ENDPOINT = Endpoint(
    method="GET", route="/internal/refunds", auth=Auth.CC_USER, permission="payments.read", query=Query, response=Refund
)

_LIST = sql.SQL(
    "SELECT r.*, p.kind FROM refunds r JOIN payment_requests p ON p.id = r.payment_request_id "
    "WHERE (r.refunded_at IS NULL) = %(refund_due)s AND {after} ORDER BY {order} LIMIT %(limit)s"
).format(after=ORDER.after("r"), order=ORDER.order("r"))


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    q = ctx.query
    rows = ctx.services.db.fetch_all(_LIST, {"refund_due": q["status"] == "due", **ORDER.params(q)})
    return ORDER.page(rows, q["limit"], refund_doc)
