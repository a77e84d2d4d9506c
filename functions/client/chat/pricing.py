"""Active tiers per mode and the first-session discount with this customer's eligibility."""

from typing import Any

import falcon
from marshmallow import Schema, fields

from functions._shapes import Discount, Tier
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pricing import MODES, active_tiers, first_session_discount, first_session_eligible


class Modes(Schema):
    chat = fields.List(fields.Nested(Tier))
    call = fields.List(fields.Nested(Tier))


class OfferedDiscount(Discount):
    eligible = fields.Boolean(metadata={"description": "no session of this customer ever reached active"})

    class Meta:
        exclude = ("updated_at",)


class Pricing(Schema):
    modes = fields.Nested(Modes)
    first_session_discount = fields.Nested(OfferedDiscount)


ENDPOINT = Endpoint(method="GET", route="/api/client/chat/pricing", auth=Auth.CUSTOMER, response=Pricing)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    db = ctx.services.db
    tiers = active_tiers(db)
    discount = first_session_discount(db)
    with db.connection() as conn:
        eligible = first_session_eligible(conn, ctx.principal.user_id)
    return {
        "modes": {mode: [t for t in tiers if t["mode"] == mode] for mode in MODES},
        "first_session_discount": {
            **{k: discount[k] for k in ("enabled", "discount_type", "value")},
            "eligible": eligible,
        },
    }
