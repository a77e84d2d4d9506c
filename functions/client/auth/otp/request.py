"""Send a one-time code to a customer's phone."""

from typing import Any

import falcon

from lib.auth.otp import request_code
from lib.auth.otp_endpoints import OtpRequestBody
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(method="POST", route="/api/client/auth/otp/request", auth=Auth.NONE, body=OtpRequestBody)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    s = ctx.services
    sent = request_code(
        s.db,
        s.config,
        s.rate_limiter,
        s.settings.auth_jwt_secret,
        flow="customer",
        raw_phone=ctx.body["phone"],
        client_ip=ctx.client_ip,
    )
    return sent.doc()
