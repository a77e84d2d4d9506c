"""Remove a bypass entry."""

import falcon

from lib.endpoint import Auth, Ctx, Endpoint
from lib.errors import NotFound

ENDPOINT = Endpoint(
    method="DELETE",
    route="/internal/otp-bypass/{entry_id:uuid}",
    auth=Auth.CC_USER,
    permission="config.write",
    status=204,
)


def handle(req: falcon.Request, ctx: Ctx) -> None:
    if not ctx.services.db.execute(
        "DELETE FROM otp_bypass_entries WHERE id = %(entry_id)s", {"entry_id": ctx.params["entry_id"]}
    ):
        raise NotFound()
