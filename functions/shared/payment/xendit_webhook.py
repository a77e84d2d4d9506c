"""Xendit invoice callback: logged first, token checked, PAID confirms once; Xendit-style replies."""

import falcon

from functions._shapes import WebhookReply
from lib.endpoint import Auth, Ctx, Endpoint, Reply
from lib.payments.webhook import handle_callback

ENDPOINT = Endpoint(
    method="POST",
    route="/api/shared/payment/webhooks/xendit",
    auth=Auth.WEBHOOK,
    raw_body=True,
    response=WebhookReply,
    envelope=False,
)


def handle(req: falcon.Request, ctx: Ctx) -> Reply:
    s = ctx.services
    token = req.get_header("X-Callback-Token")
    status, result = handle_callback(
        s.db, s.payment_events, s.settings, ctx.raw_body, token, ctx.client_ip, limiter=s.rate_limiter
    )
    return Reply(status, result, envelope=False)
