"""The authenticate step: who may call an endpoint, decided from the access token alone."""

from __future__ import annotations

from collections.abc import Callable

import falcon

from lib.auth.permissions import role_allows
from lib.auth.tokens import APP_AUDIENCE, CC_AUDIENCE
from lib.endpoint import Auth, Endpoint
from lib.errors import Forbidden, Unauthorized
from lib.principal import Principal
from lib.services import Services

Authenticator = Callable[[falcon.Request], Principal | None]

_ALLOWED_TYPES: dict[Auth, frozenset[str]] = {
    Auth.CUSTOMER: frozenset({"customer"}),
    Auth.OPTIONAL_CUSTOMER: frozenset({"customer"}),
    Auth.MITRA: frozenset({"mitra"}),
    Auth.ANY_APP_USER: frozenset({"customer", "mitra"}),
    Auth.CC_USER: frozenset({"cc_user"}),
}


def bearer_token(req: falcon.Request) -> str | None:
    header = req.get_header("Authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Malformed Authorization header")
    return token.strip()


def make_authenticator(endpoint: Endpoint, surface: str, services: Services) -> Authenticator:
    """Built once per route; the returned function runs per request."""
    kind = endpoint.auth
    if kind in (Auth.NONE, Auth.WEBHOOK):
        return lambda req: None
    audience = CC_AUDIENCE if surface == "internal" else APP_AUDIENCE
    allowed = _ALLOWED_TYPES[kind]
    permission = endpoint.permission

    def authenticate(req: falcon.Request) -> Principal | None:
        token = bearer_token(req)
        if token is None:
            if kind is Auth.OPTIONAL_CUSTOMER:
                return None
            raise Unauthorized()
        principal = services.verified_tokens.verify(token, audience)
        if services.revocations.is_revoked(principal.session_id):
            raise Unauthorized("Session has ended")
        if principal.user_type not in allowed:
            raise Forbidden()
        if kind is Auth.CC_USER and not role_allows(principal.role, permission):
            raise Forbidden("Missing permission", details={"permission": permission})
        return principal

    return authenticate
