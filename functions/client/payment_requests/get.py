"""One of the customer's payment requests (polled by the waiting screen; has session_id once paired)."""

from typing import Any

import falcon

from functions._shapes import PaymentRequest
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(
    method="GET", route="/api/client/payment-requests/{request_id:uuid}", auth=Auth.CUSTOMER, response=PaymentRequest
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return ctx.services.payments.request_of(ctx.principal.user_id, str(ctx.params["request_id"]))
