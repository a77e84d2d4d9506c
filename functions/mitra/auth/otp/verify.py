"""Verify a mitra's code and sign in."""

from typing import Any

import falcon

from lib.auth.otp import verify_code
from lib.auth.otp_endpoints import OtpVerifyBody
from lib.auth.signin import mitra_sign_in
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(method="POST", route="/api/mitra/auth/otp/verify", auth=Auth.NONE, body=OtpVerifyBody)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    s = ctx.services
    phone = verify_code(
        s.db,
        s.config,
        s.settings.auth_jwt_secret,
        flow="mitra",
        request_id=str(ctx.body["otp_request_id"]),
        code=ctx.body["code"],
    )
    return mitra_sign_in(s.db, s.settings, phone)
