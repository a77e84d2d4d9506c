"""A mitra's online/offline changes with their reason, newest first."""

from typing import Any

import falcon
from marshmallow import Schema, fields

from functions._shapes import Time
from lib.endpoint import Auth, Ctx, Endpoint
from lib.mitras import get_mitra
from lib.pagination import NEWEST_SERIAL, PageQuery


class OnlineLog(Schema):
    id = fields.Integer()
    is_online = fields.Boolean()
    reason = fields.String()
    created_at = Time()


ENDPOINT = Endpoint(
    method="GET",
    route="/internal/mitras/{mitra_id:uuid}/online-logs",
    auth=Auth.CC_USER,
    permission="mitras.read",
    query=PageQuery,
    response=OnlineLog,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    mitra_id = str(ctx.params["mitra_id"])
    get_mitra(ctx.services.db, mitra_id)  # 404 for an unknown mitra rather than an empty list
    rows = ctx.services.db.fetch_all(
        "SELECT id, is_online, reason, created_at FROM mitra_online_logs WHERE mitra_id = %(m)s "
        "AND (%(k0)s::timestamptz IS NULL OR (created_at, id) < (%(k0)s, %(k1)s)) "
        "ORDER BY created_at DESC, id DESC LIMIT %(n)s",
        {"m": mitra_id, **NEWEST_SERIAL.params(ctx.query)},
    )
    return NEWEST_SERIAL.page(rows, ctx.query["limit"])
