"""Sign a customer in with an Apple ID token and the raw nonce the app generated."""

from typing import Any

import falcon
from marshmallow import Schema, fields, validate

from functions._shapes import CustomerTokenPair
from lib.endpoint import Auth, Ctx, Endpoint


class Body(Schema):
    id_token = fields.String(required=True, validate=validate.Length(1, 8192))
    nonce = fields.String(required=True, validate=validate.Length(1, 512))


ENDPOINT = Endpoint(
    method="POST", route="/api/client/auth/apple", auth=Auth.OPTIONAL_CUSTOMER, body=Body, response=CustomerTokenPair
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    return ctx.services.accounts.sign_in_apple(ctx.body["id_token"], ctx.body["nonce"], caller=ctx.principal)
