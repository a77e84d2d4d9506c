"""Response shapes several endpoints share, one per document function of lib (named in each docstring);
the OpenAPI description is built from them (`Endpoint.response`, runtime/openapi.py).

A shape describes what is sent: every field is present (null where `allow_none`) unless its metadata
is `OPTIONAL`. Money is integer rupiah, times are ISO-8601 UTC, ids UUIDs (API.md, Conventions)."""

from typing import Any, TypeVar

from marshmallow import Schema, fields

OPTIONAL = {"x-optional": True}  # the key may be absent (runtime/openapi.py drops it from `required`)
Id = fields.UUID
Time = fields.DateTime


F = TypeVar("F", bound=fields.Field[Any])


def nullable(field: type[F], **kwargs: Any) -> F:
    return field(allow_none=True, **kwargs)


class Customer(Schema):
    """lib/auth/accounts.customer_doc."""

    id = Id()
    display_name = nullable(fields.String)
    call_name = fields.String()
    is_anonymous = fields.Boolean()
    phone = nullable(fields.String, metadata={"description": "masked"})
    email = nullable(fields.String)
    usp_seen = fields.Boolean()
    usp_seen_at = nullable(Time)
    created_at = Time()


class CustomerProfile(Customer):
    """functions/client/me/_account.customer_view: the profile the customer app reads."""

    account_belongs_to = nullable(Id)
    has_consulted = fields.Boolean()
    linked_identities = fields.List(fields.String())


class Mitra(Schema):
    """lib/auth/accounts.mitra_doc."""

    id = Id()
    phone = fields.String()
    display_name = fields.String()
    is_active = fields.Boolean()
    is_online = fields.Boolean()
    created_at = Time()


class CcUser(Schema):
    """lib/auth/accounts.cc_user_doc."""

    id = Id()
    email = fields.String()
    display_name = nullable(fields.String)
    role = fields.String()
    permissions = fields.List(fields.String())
    is_active = fields.Boolean()
    created_at = Time()
    updated_at = Time()


class Access(Schema):
    """lib/auth/flows.access_for: an access token."""

    access_token = fields.String()
    access_token_expires_at = Time()
    token_type = fields.String(metadata={"enum": ["Bearer"]})
    user_type = fields.String(metadata={"enum": ["customer", "mitra", "cc_user"]})


class AppUser(Schema):
    """The `user` of an app token pair: a customer's document or a mitra's (`user_type` says which)."""

    id = Id()
    display_name = nullable(fields.String)
    phone = nullable(fields.String)
    created_at = Time()
    call_name = fields.String(metadata=OPTIONAL)
    is_anonymous = fields.Boolean(metadata=OPTIONAL)
    email = nullable(fields.String, metadata=OPTIONAL)
    usp_seen = fields.Boolean(metadata=OPTIONAL)
    usp_seen_at = nullable(Time, metadata=OPTIONAL)
    is_active = fields.Boolean(metadata=OPTIONAL)
    is_online = fields.Boolean(metadata=OPTIONAL)


class TokenPair(Access):
    """lib/auth/flows.token_pair, for either app."""

    refresh_token = fields.String()
    refresh_token_expires_at = Time()
    user = fields.Nested(AppUser)


class CustomerTokenPair(TokenPair):
    user = fields.Nested(Customer)


class MitraTokenPair(TokenPair):
    user = fields.Nested(Mitra)


class Tier(Schema):
    """lib/pricing.tier_doc."""

    id = Id()
    mode = fields.String(metadata={"enum": ["chat", "call"]})
    minutes = fields.Integer()
    price = fields.Integer()
    label = nullable(fields.String)
    sort_order = fields.Integer()
    is_active = fields.Boolean()
    updated_at = Time()


class Discount(Schema):
    """lib/pricing.discount_doc."""

    enabled = fields.Boolean()
    discount_type = fields.String(metadata={"enum": ["amount", "percent"]})
    value = fields.Integer()
    updated_at = Time()


class SessionCustomer(Schema):
    call_name = fields.String()


class SessionMitra(Schema):
    id = Id()
    display_name = fields.String()


class Closing(Schema):
    expires_at = nullable(Time)
    customer_done = fields.Boolean()
    mitra_done = fields.Boolean()


class Session(Schema):
    """lib/chat/sessions.session_doc."""

    id = Id()
    status = fields.String()
    mode = fields.String(metadata={"enum": ["chat", "call"]})
    duration_minutes = fields.Integer()
    topic_sensitivity = nullable(fields.String, metadata={"enum": ["normal", "sensitive", None]})
    started_at = nullable(Time)
    expires_at = nullable(Time)
    ended_at = nullable(Time)
    ended_by = nullable(fields.String)
    customer = fields.Nested(SessionCustomer)
    mitra = fields.Nested(SessionMitra, allow_none=True)
    closing = fields.Nested(Closing, metadata={**OPTIONAL, "description": "while status is closing"})
    unread_count = fields.Integer(metadata=OPTIONAL)


class AdminSession(Session):
    """lib/chat/control.admin_session_doc (and listed_session_doc, whose topic is null)."""

    customer_id = Id()
    payment_request_id = nullable(Id)
    request_type = nullable(fields.String)
    targeted_mitra_id = nullable(Id)
    failure_cause = nullable(fields.String)
    created_at = Time()
    completed_at = nullable(Time)


class ChatRequest(Schema):
    """lib/chat/pairing.request_doc: a request as a notified mitra sees it."""

    session_id = Id()
    request_type = fields.String(metadata={"enum": ["blast", "targeted"]})
    customer_call_name = fields.String()
    mode = fields.String(metadata={"enum": ["chat", "call"]})
    duration_minutes = fields.Integer()
    topic_sensitivity = nullable(fields.String)
    notified_at = nullable(Time)
    expires_at = nullable(Time)


class Message(Schema):
    """lib/chat/messages.message_doc."""

    id = Id()
    session_id = Id()
    client_message_id = nullable(fields.String)
    sender_type = fields.String()
    kind = fields.String()
    content = fields.String()
    status = fields.String()
    created_at = Time()


class Extension(Schema):
    """lib/chat/extensions.extension_doc."""

    id = Id()
    extension_id = Id()
    session_id = Id()
    tier_id = nullable(Id)
    duration_minutes = fields.Integer()
    price = fields.Integer()
    status = fields.String()
    requested_at = Time()
    expires_at = Time()
    timeout_seconds = fields.Integer()
    decided_by = nullable(fields.String)
    payment_request_id = nullable(Id)
    invoice_url = nullable(fields.String)
    pay_by = nullable(Time)


class PaymentRequest(Schema):
    """lib/payments/requests.request_doc."""

    id = Id()
    kind = fields.String(metadata={"enum": ["session", "extension"]})
    status = fields.String()
    mode = fields.String()
    tier_id = nullable(Id)
    minutes = fields.Integer()
    price = fields.Integer()
    discount = fields.Integer()
    amount = fields.Integer()
    currency = fields.String()
    topic_sensitivity = nullable(fields.String)
    targeted_mitra_id = nullable(Id)
    invoice_url = nullable(fields.String)
    expires_at = nullable(Time)
    confirmed_at = nullable(Time)
    session_id = nullable(Id)
    created_at = Time()


class AdminPaymentRequest(PaymentRequest):
    """lib/payments/requests.admin_doc."""

    customer_id = Id()
    xendit_invoice_id = nullable(fields.String)
    paid_amount = nullable(fields.Integer)
    payment_method = nullable(fields.String)
    payment_channel = nullable(fields.String)
    failure_cause = nullable(fields.String)
    paid_invoice_id = nullable(fields.String)
    invoice_expires_at = nullable(Time)
    invoice_closed_at = nullable(Time)
    updated_at = Time()


class Refund(Schema):
    """lib/payments/refunds.refund_doc."""

    id = Id()
    status = fields.String(metadata={"enum": ["due", "done"]})
    payment_request_id = Id()
    customer_id = Id()
    kind = nullable(fields.String)
    invoice_id = fields.String()
    amount = fields.Integer()
    currency = fields.String()
    reason = fields.String()
    created_at = Time()
    refunded_at = nullable(Time)
    reference = nullable(fields.String)
    refunded_by = nullable(Id)


class Bypass(Schema):
    """lib/otp_bypass.bypass_doc (the code is never shown again)."""

    id = Id()
    phone = fields.String()
    note = nullable(fields.String)
    expires_at = nullable(Time)
    created_at = Time()
    updated_at = Time()


class MitraStatus(Schema):
    """lib/presence/state.status_doc."""

    is_online = fields.Boolean()
    active_session_count = fields.Integer()
    capacity = fields.Integer()
    available_slots = fields.Integer()
    heartbeat_cadence_seconds = fields.Integer()
    stale_after_seconds = fields.Integer()


class MitraPing(Schema):
    """lib/config/app.mitra_ping_doc."""

    require_ping = fields.Boolean()
    stale_after_seconds = fields.Integer()
    heartbeat_cadence_seconds = fields.Integer()


class Done(Schema):
    """`{ok: true}`: an action whose answer is only that it happened."""

    ok = fields.Boolean()


class OtpSent(Schema):
    """lib/auth/otp_endpoints: a code on its way, for either app."""

    otp_request_id = Id()
    masked_phone = fields.String()
    expires_at = Time()
    resend_available_at = Time()


class TargetedMitra(Schema):
    id = Id()
    display_name = nullable(fields.String)


class Pairing(Schema):
    """lib/chat/pairing.pairing_doc: a search as its customer sees it."""

    session_id = Id()
    payment_request_id = nullable(Id)
    status = fields.String()
    request_type = fields.String(metadata={"enum": ["blast", "targeted"]})
    targeted_mitra = fields.Nested(TargetedMitra, allow_none=True)
    expires_at = nullable(Time)
    cause = nullable(fields.String)
    reason = nullable(fields.String)
    can_fallback = fields.Boolean()
    fallback_until = nullable(Time)


class Erased(Schema):
    """lib/privacy.erase."""

    customer_id = Id()
    erased_at = Time()
    already_erased = fields.Boolean()


class CcAccess(Access):
    """lib/auth/cc_session.cc_token_response: the refresh token travels only in its cookie."""

    refresh_token_expires_at = Time()
    user = fields.Nested(CcUser)


class ConfigItem(Schema):
    key = fields.String()
    value = fields.Raw(metadata={"description": "of the item's `type`"})
    type = fields.String()
    min = fields.Integer(metadata=OPTIONAL)
    max = fields.Integer(metadata=OPTIONAL)
    choices = fields.List(fields.String(), metadata=OPTIONAL)
    updated_at = nullable(Time)
    updated_by = nullable(fields.String)


class ConfigView(Schema):
    """lib/config/app.describe: every tunable, and the env values that bound them."""

    items = fields.List(fields.Nested(ConfigItem))
    env = fields.Dict(keys=fields.String(), values=fields.Integer())


class PairingFailure(Schema):
    """A pairing_failures row."""

    id = Id()
    payment_request_id = Id()
    customer_id = Id()
    session_id = nullable(Id)
    cause = fields.String()
    review_status = fields.String(metadata={"enum": ["open", "reviewed", "refunded"]})
    notes = nullable(fields.String)
    reviewed_by = nullable(Id)
    reviewed_at = nullable(Time)
    created_at = Time()
    updated_at = Time()


class ReviewedFailure(PairingFailure):
    """A failure with its payment and refund, as the control center lists it."""

    amount = fields.Integer()
    currency = fields.String()
    confirmed_at = nullable(Time)
    refund_id = nullable(Id)
    refunded_at = nullable(Time)
    refund_reference = nullable(fields.String)


class ForcedStatus(MitraStatus):
    mitra_id = Id()
    changed = fields.Boolean()


class WebhookLog(Schema):
    """A webhook_logs row as listed (the raw body only in the single record)."""

    id = fields.Integer()
    provider = fields.String()
    received_at = Time()
    external_id = nullable(fields.String)
    invoice_id = nullable(fields.String)
    status = nullable(fields.String)
    amount = nullable(fields.Integer)
    paid_amount = nullable(fields.Integer)
    currency = nullable(fields.String)
    outcome = nullable(fields.String)
    payment_request_id = nullable(Id)
    processed_at = nullable(Time)


class WebhookReply(Schema):
    """lib/payments/webhook.handle_callback: Xendit's style, `ok` and the one flag that says what happened."""

    ok = fields.Boolean()
    error = fields.String(metadata=OPTIONAL)
    ignored = fields.String(metadata=OPTIONAL)
    reason = fields.String(metadata=OPTIONAL)
    confirmed = fields.Boolean(metadata=OPTIONAL)
    quarantined = fields.Boolean(metadata=OPTIONAL)
    duplicate = fields.Boolean(metadata=OPTIONAL)
    refund_due = fields.Boolean(metadata=OPTIONAL)
    expired = fields.Boolean(metadata=OPTIONAL)
    closed = fields.Boolean(metadata=OPTIONAL)
