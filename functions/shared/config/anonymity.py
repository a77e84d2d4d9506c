"""What the apps show about anonymity: call_name_fallback and the topic-flag rules (confirm step, one-way latch)."""

from typing import Any

import falcon
from marshmallow import Schema, fields

from lib.auth.accounts import CALL_NAME_FALLBACK
from lib.endpoint import Auth, Ctx, Endpoint

# API.md names the route (orig) but not its fields; these are the rules DOMAIN.md gives the apps about
# who sees what: a mitra sees only the customer's call name ("Anonim" when there is none), and the
# sensitivity flag's confirm step and one-way latch (app_config, operator-set). Nothing here is
# secret, and the apps read it before sign-in, as they do /api/shared/auth-providers.


class Anonymity(Schema):
    call_name_fallback = fields.String()
    sensitive_flip_confirmation_enabled = fields.Boolean()
    sensitive_flag_one_way_latch = fields.Boolean()


ENDPOINT = Endpoint(method="GET", route="/api/shared/config/anonymity", auth=Auth.NONE, response=Anonymity)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    config = ctx.services.config
    return {
        "call_name_fallback": CALL_NAME_FALLBACK,
        "sensitive_flip_confirmation_enabled": config.bool("sensitive_flip_confirmation_enabled"),
        "sensitive_flag_one_way_latch": config.bool("sensitive_flag_one_way_latch"),
    }
