"""The OTP bypass entries and whether the bypass is switched on."""

from typing import Any

import falcon

from lib.endpoint import Auth, Ctx, Endpoint
from lib.otp_bypass import bypass_doc

ENDPOINT = Endpoint(method="GET", route="/internal/otp-bypass", auth=Auth.CC_USER, permission="config.write")


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    rows = ctx.services.db.fetch_all("SELECT * FROM otp_bypass_entries ORDER BY created_at DESC")
    return {"enabled": ctx.services.config.bool("otp_bypass_enabled"), "items": [bypass_doc(r) for r in rows]}
