"""Verify a mitra's code and sign in."""

from typing import Any

import falcon

from functions._shapes import MitraTokenPair
from lib.auth.otp_endpoints import OtpVerifyBody, verified_phone
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(
    method="POST", route="/api/mitra/auth/otp/verify", auth=Auth.NONE, body=OtpVerifyBody, response=MitraTokenPair
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    phone = verified_phone(ctx, "mitra")
    return ctx.services.accounts.sign_in_mitra(phone)
