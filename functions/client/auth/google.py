"""Sign a customer in with a Google ID token."""

from typing import Any

import falcon
from marshmallow import Schema, fields, validate

from functions._shapes import CustomerTokenPair
from lib.endpoint import Auth, Ctx, Endpoint


class Body(Schema):
    id_token = fields.String(required=True, validate=validate.Length(1, 8192))


ENDPOINT = Endpoint(
    method="POST", route="/api/client/auth/google", auth=Auth.OPTIONAL_CUSTOMER, body=Body, response=CustomerTokenPair
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    return ctx.services.accounts.sign_in_google(ctx.body["id_token"], caller=ctx.principal)
