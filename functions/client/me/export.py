"""Everything we hold about the signed-in customer, as one JSON document (PDP right of access)."""

from typing import Any

import falcon

from lib.endpoint import Auth, Ctx, Endpoint
from lib.privacy import export

ENDPOINT = Endpoint(method="GET", route="/api/client/me/export", auth=Auth.CUSTOMER)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return export(ctx.services.db, ctx.services.transcripts, ctx.principal.user_id)
