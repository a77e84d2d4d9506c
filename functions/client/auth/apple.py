"""Sign a customer in with an Apple ID token and the raw nonce the app generated."""

from typing import Any

import falcon
from marshmallow import Schema, fields, validate

from functions._shapes import CustomerTokenPair
from lib.auth.signin import customer_sign_in
from lib.auth.social import verified_email, verify_apple
from lib.endpoint import Auth, Ctx, Endpoint


class Body(Schema):
    id_token = fields.String(required=True, validate=validate.Length(1, 8192))
    nonce = fields.String(required=True, validate=validate.Length(1, 512))


ENDPOINT = Endpoint(
    method="POST", route="/api/client/auth/apple", auth=Auth.OPTIONAL_CUSTOMER, body=Body, response=CustomerTokenPair
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    s = ctx.services
    claims = verify_apple(ctx.body["id_token"], ctx.body["nonce"], s.apple_jwks, s.settings.apple_client_ids)
    return customer_sign_in(
        s.db, s.profiles, s.settings, "apple", claims["sub"], caller=ctx.principal, email=verified_email(claims)
    )
