"""One customer with their identities (no secrets) and a summary of sessions and payments."""

from typing import Any

import falcon

from lib.customers import customer_record
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(
    method="GET", route="/internal/customers/{customer_id:uuid}", auth=Auth.CC_USER, permission="customers.read"
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    return customer_record(ctx.services.db, str(ctx.params["customer_id"]))
