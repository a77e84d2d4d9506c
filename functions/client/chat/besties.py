"""The Besties this customer has talked to, each with is_online (the online flag) and available (can take a "curhat lagi" now)."""

from typing import Any

import falcon
from marshmallow import Schema, fields

from functions._shapes import Id, Time
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pagination import PageQuery


class Bestie(Schema):
    id = Id()
    display_name = fields.String()
    sessions = fields.Integer()
    last_session_at = Time()
    is_online = fields.Boolean()
    available = fields.Boolean(metadata={"description": "could take a targeted request now"})


ENDPOINT = Endpoint(
    method="GET", route="/api/client/chat/besties", auth=Auth.CUSTOMER, query=PageQuery, response=Bestie
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return ctx.services.chat.besties(ctx.principal.user_id, dict(ctx.query))
