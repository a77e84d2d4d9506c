"""A mitra's online/offline changes with their reason, newest first."""

from typing import Any

import falcon
from marshmallow import Schema, fields
from psycopg import sql

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

_LIST = sql.SQL(
    "SELECT id, is_online, reason, created_at FROM mitra_online_logs WHERE mitra_id = %(mitra_id)s "
    "AND {after} ORDER BY {order} LIMIT %(limit)s"
).format(after=NEWEST_SERIAL.after(), order=NEWEST_SERIAL.order())


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    mitra_id = str(ctx.params["mitra_id"])
    get_mitra(ctx.services.db, mitra_id)  # 404 for an unknown mitra rather than an empty list
    rows = ctx.services.db.fetch_all(_LIST, {"mitra_id": mitra_id, **NEWEST_SERIAL.params(ctx.query)})
    return NEWEST_SERIAL.page(rows, ctx.query["limit"])
