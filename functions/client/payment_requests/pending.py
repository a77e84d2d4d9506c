"""The customer's pending, unexpired payment requests, newest first."""

from typing import Any

import falcon

from lib.endpoint import Auth, Ctx, Endpoint
from lib.payments.requests import request_doc

ENDPOINT = Endpoint(method="GET", route="/api/client/payment-requests/pending", auth=Auth.CUSTOMER)


def handle(req: falcon.Request, ctx: Ctx) -> list[dict[str, Any]]:
    assert ctx.principal is not None
    rows = ctx.services.db.fetch_all(
        "SELECT * FROM payment_requests WHERE customer_id = %(c)s AND status = 'pending' AND expires_at > now() "
        "ORDER BY created_at DESC",
        {"c": ctx.principal.user_id},
    )
    return [request_doc(r) for r in rows]
