"""Register a new mitra (operators only; mitras never sign themselves up)."""

import falcon
from marshmallow import Schema, validate

from functions._shapes import Mitra
from lib.endpoint import Auth, Ctx, Endpoint, Reply
from lib.fields import PhoneField, Text
from lib.mitras import create_mitra


class Body(Schema):
    phone = PhoneField(required=True)
    display_name = Text(required=True, validate=validate.Length(1, 60))


ENDPOINT = Endpoint(
    method="POST",
    route="/internal/mitras",
    auth=Auth.CC_USER,
    permission="mitras.manage",
    body=Body,
    status=201,
    response=Mitra,
)


def handle(req: falcon.Request, ctx: Ctx) -> Reply:
    return Reply(201, create_mitra(ctx.services.db, ctx.body["phone"], ctx.body["display_name"]))
