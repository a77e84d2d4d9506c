"""One payment request with its webhook history."""

from typing import Any

import falcon

from lib.endpoint import Auth, Ctx, Endpoint
from lib.errors import NotFound
from lib.payments.requests import admin_doc

ENDPOINT = Endpoint(
    method="GET", route="/internal/payment-requests/{request_id:uuid}", auth=Auth.CC_USER, permission="payments.read"
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    db = ctx.services.db
    row = db.fetch_one("SELECT * FROM payment_requests WHERE id = %(id)s", {"id": ctx.params["request_id"]})
    if row is None:
        raise NotFound()
    logs = db.fetch_all(
        "SELECT id, received_at, status, outcome FROM webhook_logs WHERE external_id = %(e)s ORDER BY received_at, id",
        {"e": str(row["id"])},
    )
    return {**admin_doc(row), "webhooks": logs}
