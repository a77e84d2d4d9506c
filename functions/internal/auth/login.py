"""Control-center login: access token in the body, refresh token in an HttpOnly cookie."""

import falcon
from marshmallow import Schema, fields, validate

from functions._shapes import CcAccess
from lib.auth.accounts import cc_user_doc
from lib.auth.cc_session import cc_token_response, refresh_cookie
from lib.auth.flows import sign_in
from lib.endpoint import Auth, Ctx, Endpoint, Reply


class Body(Schema):
    email = fields.String(required=True, validate=validate.Length(1, 320))
    password = fields.String(required=True, validate=validate.Length(1, 1024))


ENDPOINT = Endpoint(method="POST", route="/internal/auth/login", auth=Auth.NONE, body=Body, response=CcAccess)


def handle(req: falcon.Request, ctx: Ctx) -> Reply:
    user = ctx.services.accounts.authenticate_cc_user(ctx.body["email"], ctx.body["password"], ctx.client_ip)
    with ctx.services.db.connection() as conn:
        grant = sign_in(conn, ctx.services.settings, "cc_user", str(user["id"]))
    doc = cc_user_doc(user)
    return Reply(200, cc_token_response(ctx.services.settings, grant, doc), cookies=[refresh_cookie(grant)])
