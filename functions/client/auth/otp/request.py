"""Send a one-time code to a customer's phone."""

from typing import Any

import falcon

from lib.auth.otp import request_code
from lib.auth.otp_endpoints import OtpRequestBody
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(method="POST", route="/api/client/auth/otp/request", auth=Auth.NONE, body=OtpRequestBody)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    return request_code(ctx.services, "customer", ctx.body["phone"], ctx.client_ip).doc()
