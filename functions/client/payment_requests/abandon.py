"""Give up on a pending payment request (the app's back button); 409 unless it is pending."""

from typing import Any

import falcon

from functions._shapes import PaymentRequest
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(
    method="POST",
    route="/api/client/payment-requests/{request_id:uuid}/abandon",
    auth=Auth.CUSTOMER,
    response=PaymentRequest,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    request_id = str(ctx.params["request_id"])
    return ctx.services.payments.abandon(ctx.principal.user_id, request_id)  # the next poll here sees it at once
