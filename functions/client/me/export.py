"""Everything we hold about the signed-in customer, as one JSON document (PDP right of access)."""

from typing import Any

import falcon
from marshmallow import Schema, fields

from functions._shapes import Id, Time, nullable
from lib.endpoint import Auth, Ctx, Endpoint


class Profile(Schema):
    id = Id()
    display_name = nullable(fields.String)
    phone = nullable(fields.String)
    email = nullable(fields.String)
    is_anonymous = fields.Boolean()
    usp_seen_at = nullable(Time)
    created_at = Time()
    last_login_at = nullable(Time)
    linked_accounts = fields.List(Id())


class Identity(Schema):
    provider = fields.String()
    subject = fields.String()
    email = nullable(fields.String)
    created_at = Time()


class Device(Schema):
    platform = fields.String()
    created_at = Time()
    updated_at = Time()


class ExportedSession(Schema):
    id = Id()
    status = fields.String()
    mode = fields.String()
    request_type = nullable(fields.String)
    duration_minutes = fields.Integer()
    topic_sensitivity = nullable(fields.String)
    created_at = Time()
    started_at = nullable(Time)
    expires_at = nullable(Time)
    completed_at = nullable(Time)
    ended_by = nullable(fields.String)
    transcript_purged_at = nullable(Time)


class ExportedMessage(Schema):
    id = Id()
    session_id = Id()
    kind = fields.String()
    content = nullable(fields.String)
    status = fields.String()
    created_at = Time()


class ExportedPayment(Schema):
    id = Id()
    status = fields.String()
    mode = fields.String()
    minutes = fields.Integer()
    price = fields.Integer()
    discount = fields.Integer()
    amount = fields.Integer()
    currency = fields.String()
    payment_method = nullable(fields.String)
    payment_channel = nullable(fields.String)
    created_at = Time()
    confirmed_at = nullable(Time)
    session_id = nullable(Id)


class Export(Schema):
    profile = fields.Nested(Profile)
    identities = fields.List(fields.Nested(Identity))
    devices = fields.List(fields.Nested(Device))
    sessions = fields.List(fields.Nested(ExportedSession))
    messages = fields.List(fields.Nested(ExportedMessage))
    payments = fields.List(fields.Nested(ExportedPayment))


ENDPOINT = Endpoint(method="GET", route="/api/client/me/export", auth=Auth.CUSTOMER, response=Export)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return ctx.services.accounts.export_customer(ctx.principal.user_id)
