"""Create an anonymous customer and sign it in (the app's first launch)."""

from typing import Any

import falcon
from marshmallow import Schema, validate

from functions._shapes import CustomerTokenPair
from lib.auth.accounts import load_account
from lib.auth.flows import sign_in, token_pair
from lib.endpoint import Auth, Ctx, Endpoint, Reply
from lib.fields import Text
from lib.requests_ip import network_of


class Body(Schema):
    display_name = Text(load_default=None, allow_none=True, validate=validate.Length(1, 40))


ENDPOINT = Endpoint(
    method="POST", route="/api/shared/auth/anonymous", auth=Auth.NONE, body=Body, status=201, response=CustomerTokenPair
)


def handle(req: falcon.Request, ctx: Ctx) -> Reply:
    services = ctx.services
    limit = services.config.int("anonymous_signups_per_ip_per_hour")
    services.rate_limiter.hit("anonymous", network_of(ctx.client_ip), limit, 3600)
    with services.db.connection() as conn:
        row = conn.execute(
            "INSERT INTO customers (display_name) VALUES (%(display_name)s) RETURNING id",
            {"display_name": ctx.body["display_name"]},
        ).fetchone()
        assert row is not None
        grant = sign_in(conn, services.settings, "customer", str(row["id"]))
        account: dict[str, Any] | None = load_account(conn, "customer", str(row["id"]))
    assert account is not None
    return Reply(201, token_pair(services.settings, grant, account))
