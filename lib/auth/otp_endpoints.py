"""What the customer and mitra OTP endpoints share: their bodies, and the request and verify steps
wired to the parts of ctx they need (the two flows differ only in the flow name)."""

from typing import Any

from marshmallow import Schema, fields

from lib.auth.otp import request_code, verify_code
from lib.endpoint import Ctx


class OtpRequestBody(Schema):
    phone = fields.String(required=True)


class OtpVerifyBody(Schema):
    otp_request_id = fields.UUID(required=True)
    code = fields.String(required=True)


def send_code(ctx: Ctx, flow: str) -> dict[str, Any]:
    s = ctx.services
    sent = request_code(
        s.db,
        s.config,
        s.rate_limiter,
        s.settings.auth_jwt_secret,
        s.otp_provider,
        flow=flow,
        raw_phone=ctx.body["phone"],
        client_ip=ctx.client_ip,
    )
    return sent.doc()


def verified_phone(ctx: Ctx, flow: str) -> str:
    s = ctx.services
    return verify_code(
        s.db,
        s.config,
        s.settings.auth_jwt_secret,
        s.otp_provider,
        flow=flow,
        request_id=str(ctx.body["otp_request_id"]),
        code=ctx.body["code"],
    )
