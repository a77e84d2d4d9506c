"""Xendit invoice callback: logged first, token checked, PAID confirms once; Xendit-style replies."""

import falcon

from lib.endpoint import Auth, Ctx, Endpoint, Reply
from lib.payments.webhook import handle_callback

ENDPOINT = Endpoint(method="POST", route="/api/shared/payment/webhooks/xendit", auth=Auth.WEBHOOK, raw_body=True)


def handle(req: falcon.Request, ctx: Ctx) -> Reply:
    status, result = handle_callback(ctx.services, ctx.raw_body, req.get_header("X-Callback-Token"), ctx.client_ip)
    return Reply(status, result, envelope=False)
