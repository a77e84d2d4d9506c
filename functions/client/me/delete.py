"""Erase the signed-in customer's account (PDP right to erasure); 409 while a chat or a payment is open."""

from typing import Any

import falcon

from functions._shapes import Erased
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(method="DELETE", route="/api/client/me", auth=Auth.CUSTOMER, response=Erased)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    me = ctx.principal.user_id
    return ctx.services.accounts.erase_customer(me, ("customer", me), reason=None)
