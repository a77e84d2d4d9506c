"""End the control-center session: clears the cookie and revokes the session everywhere."""

import falcon

from lib.auth.cc_session import clear_cookie
from lib.endpoint import Auth, Ctx, Endpoint, Reply

ENDPOINT = Endpoint(method="POST", route="/internal/auth/logout", auth=Auth.CC_USER, status=204)


def handle(req: falcon.Request, ctx: Ctx) -> Reply:
    assert ctx.principal is not None
    ctx.services.revocations.revoke_sessions([ctx.principal.session_id], reason="logout")
    return Reply(204, cookies=[clear_cookie()])
