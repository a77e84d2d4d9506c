"""Rotate the control-center refresh cookie and issue a new access token (same-origin only)."""

import falcon

from functions._shapes import CcAccess
from lib.auth.cc_session import COOKIE, cc_token_response, check_origin, clear_cookie, refresh_cookie
from lib.auth.flows import CC_USER_TYPES
from lib.auth.sessions import RefreshInvalid
from lib.endpoint import Auth, Ctx, Endpoint, Reply

ENDPOINT = Endpoint(method="POST", route="/internal/auth/refresh", auth=Auth.NONE, response=CcAccess)


def handle(req: falcon.Request, ctx: Ctx) -> Reply:
    s = ctx.services
    check_origin(req, s.settings.cc_origin)
    cookie = req.cookies.get(COOKIE) or ""
    try:
        grant, account = s.accounts.refresh(cookie, ctx.client_ip, CC_USER_TYPES)
    except RefreshInvalid as exc:
        exc.cookies.append(clear_cookie())  # a dead cookie is of no use to keep
        raise
    return Reply(200, cc_token_response(s.settings, grant, account), cookies=[refresh_cookie(grant)])
