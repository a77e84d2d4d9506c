"""End the caller's session: its refresh token and live access tokens stop working."""

import falcon

from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(method="POST", route="/api/shared/auth/logout", auth=Auth.ANY_APP_USER, status=204)


def handle(req: falcon.Request, ctx: Ctx) -> None:
    assert ctx.principal is not None
    ctx.services.revocations.revoke_sessions([ctx.principal.session_id], reason="logout")
