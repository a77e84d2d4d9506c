"""The customer's pending, unexpired payment requests, newest first, each with kind (session|extension) and mitra_call_name."""

from typing import Any

import falcon
from marshmallow import fields
from psycopg import sql

from functions._shapes import PaymentRequest, nullable
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pagination import NEWEST, PageQuery
from lib.payments.requests import request_doc


class PendingPayment(PaymentRequest):
    mitra_call_name = nullable(fields.String)


ENDPOINT = Endpoint(
    method="GET",
    route="/api/client/payment-requests/pending",
    auth=Auth.CUSTOMER,
    query=PageQuery,
    response=PendingPayment,
)


def _item(row: dict[str, Any]) -> dict[str, Any]:
    # What the "Pembayaran" tab shows (issue 26; API.md names neither field, so they follow the
    # mitra's `customer_call_name`): `kind` is session | extension, and `mitra_call_name` the Bestie
    # the money is for, the session's for an extension, the targeted one for a "curhat lagi", and
    # null for a blast, which has no Bestie until one accepts.
    return {**request_doc(row), "mitra_call_name": row["mitra_name"]}


_PENDING = sql.SQL(
    "SELECT p.*, m.display_name AS mitra_name FROM payment_requests p "
    "LEFT JOIN chat_sessions s ON s.id = p.session_id AND p.kind = 'extension' "
    "LEFT JOIN mitras m ON m.id = COALESCE(s.mitra_id, p.targeted_mitra_id) "
    "WHERE p.customer_id = %(customer_id)s AND p.status = 'pending' AND p.expires_at > now() "
    "AND {after} ORDER BY {order} LIMIT %(limit)s"
).format(after=NEWEST.after("p"), order=NEWEST.order("p"))


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    rows = ctx.services.db.fetch_all(_PENDING, {"customer_id": ctx.principal.user_id, **NEWEST.params(ctx.query)})
    return NEWEST.page(rows, ctx.query["limit"], _item)
