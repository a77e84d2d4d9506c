"""The customer's pending, unexpired payment requests, newest first."""

from typing import Any

import falcon

from lib.endpoint import Auth, Ctx, Endpoint
from lib.pagination import NEWEST, PageQuery
from lib.payments.requests import request_doc

ENDPOINT = Endpoint(method="GET", route="/api/client/payment-requests/pending", auth=Auth.CUSTOMER, query=PageQuery)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    rows = ctx.services.db.fetch_all(
        "SELECT * FROM payment_requests WHERE customer_id = %(cu)s AND status = 'pending' AND expires_at > now() "
        "AND (%(k0)s::timestamptz IS NULL OR (created_at, id) < (%(k0)s, %(k1)s)) "
        "ORDER BY created_at DESC, id DESC LIMIT %(n)s",
        {"cu": ctx.principal.user_id, **NEWEST.params(ctx.query)},
    )
    return NEWEST.page(rows, ctx.query["limit"], request_doc)
