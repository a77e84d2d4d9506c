"""One webhook callback, with its verbatim body."""

from typing import Any

import falcon

from lib.endpoint import Auth, Ctx, Endpoint
from lib.errors import NotFound

ENDPOINT = Endpoint(
    method="GET", route="/internal/webhook-logs/{log_id:int(min=1)}", auth=Auth.CC_USER, permission="payments.read"
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    row = ctx.services.db.fetch_one("SELECT * FROM webhook_logs WHERE id = %(id)s", {"id": ctx.params["log_id"]})
    if row is None:
        raise NotFound()
    return {**row, "raw_body": bytes(row["raw_body"]).decode("utf-8", errors="replace")}
