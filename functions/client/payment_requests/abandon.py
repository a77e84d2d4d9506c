"""Give up on a pending payment request (the app's back button); 409 unless it is pending."""

from typing import Any

import falcon

from functions._shapes import PaymentRequest
from lib.endpoint import Auth, Ctx, Endpoint
from lib.payments.requests import abandon

ENDPOINT = Endpoint(
    method="POST",
    route="/api/client/payment-requests/{request_id:uuid}/abandon",
    auth=Auth.CUSTOMER,
    response=PaymentRequest,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    request_id = str(ctx.params["request_id"])
    doc = abandon(ctx.services.db, request_id, ctx.principal.user_id)
    ctx.services.payment_views.forget(request_id)  # the next poll here sees it at once
    return doc
