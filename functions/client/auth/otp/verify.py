"""Verify a customer's code and sign in (upgrading an anonymous caller in place)."""

from typing import Any

import falcon

from functions._shapes import CustomerTokenPair
from lib.auth.otp_endpoints import OtpVerifyBody, verified_phone
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(
    method="POST",
    route="/api/client/auth/otp/verify",
    auth=Auth.OPTIONAL_CUSTOMER,
    body=OtpVerifyBody,
    response=CustomerTokenPair,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    phone = verified_phone(ctx, "customer")
    return ctx.services.accounts.sign_in_customer("phone", phone, caller=ctx.principal, phone=phone)
