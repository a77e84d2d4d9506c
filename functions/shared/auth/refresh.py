"""Exchange a refresh token for a new token pair (rotation, reuse detection)."""

from typing import Any

import falcon
from marshmallow import Schema, fields

from functions._shapes import TokenPair
from lib.auth.flows import APP_USER_TYPES, token_pair
from lib.endpoint import Auth, Ctx, Endpoint


class Body(Schema):
    refresh_token = fields.String(required=True)


ENDPOINT = Endpoint(method="POST", route="/api/shared/auth/refresh", auth=Auth.NONE, body=Body, response=TokenPair)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    s = ctx.services
    grant, account = s.accounts.refresh(ctx.body["refresh_token"], ctx.client_ip, APP_USER_TYPES)
    return token_pair(s.settings, grant, account)
