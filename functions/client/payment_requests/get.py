"""One of the customer's payment requests (polled by the waiting screen; has session_id once paired)."""

from typing import Any

import falcon

from functions._shapes import PaymentRequest
from lib.endpoint import Auth, Ctx, Endpoint
from lib.payments.requests import owned_doc

ENDPOINT = Endpoint(
    method="GET", route="/api/client/payment-requests/{request_id:uuid}", auth=Auth.CUSTOMER, response=PaymentRequest
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return owned_doc(ctx.services.payment_views, str(ctx.params["request_id"]), ctx.principal.user_id)
