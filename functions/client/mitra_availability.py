"""Whether a Bestie is available now ({available, count}); polled every 5 s by idle apps."""

from typing import Any

import falcon
from marshmallow import Schema, fields

from lib.endpoint import Auth, Ctx, Endpoint


class Availability(Schema):
    available = fields.Boolean()
    count = fields.Integer()


ENDPOINT = Endpoint(method="GET", route="/api/client/mitra-availability", auth=Auth.CUSTOMER, response=Availability)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    return ctx.services.presence.availability()
