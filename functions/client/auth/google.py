"""Sign a customer in with a Google ID token."""

from typing import Any

import falcon
from marshmallow import Schema, fields, validate

from functions._shapes import CustomerTokenPair
from lib.auth.signin import customer_sign_in
from lib.auth.social import verified_email, verify_google
from lib.endpoint import Auth, Ctx, Endpoint


class Body(Schema):
    id_token = fields.String(required=True, validate=validate.Length(1, 8192))


ENDPOINT = Endpoint(
    method="POST", route="/api/client/auth/google", auth=Auth.OPTIONAL_CUSTOMER, body=Body, response=CustomerTokenPair
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    s = ctx.services
    claims = verify_google(ctx.body["id_token"], s.google_jwks, s.settings.google_client_ids)
    return customer_sign_in(
        s.db, s.profiles, s.settings, "google", claims["sub"], caller=ctx.principal, email=verified_email(claims)
    )
