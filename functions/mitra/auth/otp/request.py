"""Send a one-time code to a mitra's registered phone (unknown or inactive numbers get none)."""

from typing import Any

import falcon

from functions._shapes import OtpSent
from lib.auth.otp_endpoints import OtpRequestBody, send_code
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(
    method="POST", route="/api/mitra/auth/otp/request", auth=Auth.NONE, body=OtpRequestBody, response=OtpSent
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    return send_code(ctx, "mitra")
