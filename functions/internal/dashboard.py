"""The operators' overview: mitras online and available, searches, live and sensitive sessions,
today's sessions and revenue, open failed pairings."""

from typing import Any

import falcon
from marshmallow import Schema, fields

from lib.endpoint import Auth, Ctx, Endpoint


class Dashboard(Schema):
    mitras_online = fields.Integer()
    mitras_available = fields.Integer()
    searching_requests = fields.Integer()
    active_sessions = fields.Integer()
    sensitive_sessions = fields.Integer()
    sessions_today = fields.Integer()
    revenue_today = fields.Integer()
    open_failed_pairings = fields.Integer()


ENDPOINT = Endpoint(
    method="GET", route="/internal/dashboard", auth=Auth.CC_USER, permission="dashboard.read", response=Dashboard
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    return ctx.services.chat.dashboard()
