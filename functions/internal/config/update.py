"""Change tunables: all or nothing, audited, visible to every process within a second."""

from typing import Any

import falcon
from marshmallow import Schema, fields

from functions._shapes import ConfigView
from lib.config.app import KEYS, describe
from lib.endpoint import Auth, Ctx, Endpoint

# Exactly the known keys (unknown ones are rejected on the internal surface); values are checked
# by the key's own rule, which is stricter than marshmallow's coercion (1.0 is not an integer).
Body = Schema.from_dict({name: fields.Raw(allow_none=True) for name in KEYS}, name="ConfigPatch")

ENDPOINT = Endpoint(
    method="PATCH",
    route="/internal/config",
    auth=Auth.CC_USER,
    permission="config.write",
    body=Body,
    response=ConfigView,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    s = ctx.services
    if ctx.body:
        s.config.set(dict(ctx.body), ctx.principal.user_id, s.settings)
    return describe(s.config, s.settings)
