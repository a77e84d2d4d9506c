"""Verify a customer's code and sign in (upgrading an anonymous caller in place)."""

from typing import Any

import falcon

from lib.auth.otp import verify_code
from lib.auth.otp_endpoints import OtpVerifyBody
from lib.auth.signin import customer_sign_in
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(method="POST", route="/api/client/auth/otp/verify", auth=Auth.OPTIONAL_CUSTOMER, body=OtpVerifyBody)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    s = ctx.services
    phone = verify_code(
        s.db,
        s.config,
        s.settings.auth_jwt_secret,
        flow="customer",
        request_id=str(ctx.body["otp_request_id"]),
        code=ctx.body["code"],
    )
    return customer_sign_in(s.db, s.settings, "phone", phone, caller=ctx.principal, phone=phone)
