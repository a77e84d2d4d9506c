"""The operators' overview: mitras online and available, searches, live and sensitive sessions,
today's sessions and revenue, open failed pairings."""

from typing import Any

import falcon

from lib.chat.control import dashboard
from lib.endpoint import Auth, Ctx, Endpoint

ENDPOINT = Endpoint(method="GET", route="/internal/dashboard", auth=Auth.CC_USER, permission="dashboard.read")


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    s = ctx.services
    return dashboard(s.db, s.valkey, s.config)
