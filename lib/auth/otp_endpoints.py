"""Request and verify bodies shared by the customer and mitra OTP endpoints."""

from marshmallow import Schema, fields


class OtpRequestBody(Schema):
    phone = fields.String(required=True)


class OtpVerifyBody(Schema):
    otp_request_id = fields.UUID(required=True)
    code = fields.String(required=True)
