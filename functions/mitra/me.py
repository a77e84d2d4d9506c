"""The signed-in mitra's profile."""

from typing import Any

import falcon

from functions._shapes import Mitra
from lib.auth.accounts import mitra_doc
from lib.endpoint import Auth, Ctx, Endpoint
from lib.errors import Unauthorized

ENDPOINT = Endpoint(method="GET", route="/api/mitra/me", auth=Auth.MITRA, response=Mitra)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    row = ctx.services.db.fetch_one(
        "SELECT m.*, COALESCE(s.is_online, false) AS is_online FROM mitras m "
        "LEFT JOIN mitra_online_status s ON s.mitra_id = m.id WHERE m.id = %(mitra_id)s",
        {"mitra_id": ctx.principal.user_id},
    )
    if row is None:
        raise Unauthorized("Account not found")
    return mitra_doc(row)
