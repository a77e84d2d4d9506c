"""One webhook callback, with its verbatim body."""

from typing import Any

import falcon
from marshmallow import fields

from functions._shapes import WebhookLog, nullable
from lib.endpoint import Auth, Ctx, Endpoint
from lib.errors import NotFound


class WebhookLogRecord(WebhookLog):
    client_ip = nullable(fields.String)
    raw_body = fields.String(metadata={"description": "as received (redacted once its customer is erased)"})
    body_length = nullable(fields.Integer)
    body_sha256 = nullable(fields.String)


ENDPOINT = Endpoint(
    method="GET",
    route="/internal/webhook-logs/{log_id:int(min=1)}",
    auth=Auth.CC_USER,
    permission="payments.read",
    response=WebhookLogRecord,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    row = ctx.services.db.fetch_one(
        "SELECT * FROM webhook_logs WHERE id = %(webhook_log_id)s", {"webhook_log_id": ctx.params["log_id"]}
    )
    if row is None:
        raise NotFound()
    return {**row, "raw_body": bytes(row["raw_body"]).decode("utf-8", errors="replace")}
