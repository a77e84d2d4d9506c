"""Edit a mitra's display name or phone."""

from typing import Any

import falcon
from marshmallow import Schema, validate

from functions._shapes import Mitra
from lib.endpoint import Auth, Ctx, Endpoint
from lib.fields import PhoneField, Text
from lib.mitras import update_mitra


class Body(Schema):
    phone = PhoneField()
    display_name = Text(validate=validate.Length(1, 60))


ENDPOINT = Endpoint(
    method="PATCH",
    route="/internal/mitras/{mitra_id:uuid}",
    auth=Auth.CC_USER,
    permission="mitras.manage",
    body=Body,
    response=Mitra,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    return update_mitra(ctx.services.db, str(ctx.params["mitra_id"]), ctx.body)
