"""Erase a customer on their request (PDP), audited with who and why; 409 while a chat or a payment is open."""

from typing import Any

import falcon

from functions._shapes import Erased
from lib.endpoint import Auth, Ctx, Endpoint
from lib.fields import ReasonBody

ENDPOINT = Endpoint(
    method="POST",
    route="/internal/customers/{customer_id:uuid}/erase",
    auth=Auth.CC_USER,
    permission="customers.manage",
    body=ReasonBody,
    response=Erased,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    actor = ("cc_user", ctx.principal.user_id)
    return ctx.services.accounts.erase_customer(str(ctx.params["customer_id"]), actor, ctx.body["reason"])
