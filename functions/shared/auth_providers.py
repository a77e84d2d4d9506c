"""Which sign-in methods the apps should offer."""

from typing import Any

import falcon
from marshmallow import Schema, fields

from lib.endpoint import Auth, Ctx, Endpoint


class Provider(Schema):
    enabled = fields.Boolean()


class Providers(Schema):
    phone = fields.Nested(Provider)
    google = fields.Nested(Provider)
    apple = fields.Nested(Provider)


ENDPOINT = Endpoint(method="GET", route="/api/shared/auth-providers", auth=Auth.NONE, response=Providers)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    s = ctx.services.settings
    return {
        "phone": {"enabled": True},
        "google": {"enabled": bool(s.google_client_ids)},
        "apple": {"enabled": bool(s.apple_client_ids)},
    }
