"""Give up on a pending payment request (the app's back button); 409 unless it is pending."""

from typing import Any

import falcon

from lib.endpoint import Auth, Ctx, Endpoint
from lib.payments.requests import abandon

ENDPOINT = Endpoint(method="POST", route="/api/client/payment-requests/{request_id:uuid}/abandon", auth=Auth.CUSTOMER)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return abandon(ctx.services.db, str(ctx.params["request_id"]), ctx.principal.user_id)
