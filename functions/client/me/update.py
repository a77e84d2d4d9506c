"""Change the customer's display (call) name."""

from typing import Any

import falcon
from marshmallow import Schema, validate

from functions._shapes import CustomerProfile
from functions.client.me._account import customer_view
from lib.endpoint import Auth, Ctx, Endpoint
from lib.fields import Text


class Body(Schema):
    display_name = Text(required=True, allow_none=True, validate=validate.Length(1, 40))


ENDPOINT = Endpoint(method="PATCH", route="/api/client/me", auth=Auth.CUSTOMER, body=Body, response=CustomerProfile)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    ctx.services.db.execute(
        "UPDATE customers SET display_name = %(display_name)s, updated_at = now() WHERE id = %(customer_id)s",
        {"display_name": ctx.body["display_name"], "customer_id": ctx.principal.user_id},
    )
    ctx.services.profiles.forget(ctx.principal.user_id)  # this process answers with the change at once
    return customer_view(ctx.services.db, ctx.principal.user_id)
