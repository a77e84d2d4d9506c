"""Mitras, newest first; search by name or phone, filter by online state."""

from typing import Any

import falcon
from marshmallow import fields, validate

from functions._shapes import Mitra
from lib.auth.accounts import mitra_doc
from lib.endpoint import Auth, Ctx, Endpoint
from lib.mitras import search_mitras
from lib.pagination import NEWEST, PageQuery


class Query(PageQuery):
    q = fields.String(load_default=None, validate=validate.Length(1, 100))
    online = fields.Boolean(load_default=None)


ENDPOINT = Endpoint(
    method="GET", route="/internal/mitras", auth=Auth.CC_USER, permission="mitras.read", query=Query, response=Mitra
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    q = ctx.query
    rows = search_mitras(ctx.services.db, q=q["q"], online=q["online"], position=NEWEST.params(q))
    return NEWEST.page(rows, q["limit"], mitra_doc)
