"""Xendit invoice callback: logged first, token checked, PAID confirms once; Xendit-style replies."""

import falcon

from functions._shapes import WebhookReply
from lib.endpoint import Auth, Ctx, Endpoint, Reply

ENDPOINT = Endpoint(
    method="POST",
    route="/api/shared/payment/webhooks/xendit",
    auth=Auth.WEBHOOK,
    raw_body=True,
    response=WebhookReply,
    envelope=False,
)


def handle(req: falcon.Request, ctx: Ctx) -> Reply:
    token = req.get_header("X-Callback-Token")
    status, result = ctx.services.payments.callback(ctx.raw_body, token, ctx.client_ip)
    return Reply(status, result, envelope=False)
