"""Which database constraint means which domain error. Races are settled by these constraints
(STYLE.md 7); lib.db translates every constraint violation and data error through this module, so
no caller inspects driver errors or constraint names itself, and input that slipped past a schema
is still a 4xx with a domain code, never a 500."""

from __future__ import annotations

import logging

import psycopg

from lib.errors import ApiError, Conflict, ValidationFailed

log = logging.getLogger(__name__)


class EmailTaken(Conflict):
    code, message = "EMAIL_TAKEN", "A user with this e-mail exists"


class PhoneTaken(Conflict):
    code, message = "PHONE_TAKEN", "A Bestie with this phone exists"


class TierExists(Conflict):
    code, message = "TIER_EXISTS", "A tier with this mode and length exists"


class BypassExists(Conflict):
    code, message = "BYPASS_EXISTS", "This phone already has a bypass entry"


class OpenRequestExists(Conflict):
    code, message = "ALREADY_ACTIVE", "You already have an open payment request"


class ChatAlreadyOpen(Conflict):
    code, message = "ALREADY_ACTIVE", "You already have a chat in progress"


class ExtensionPending(Conflict):
    code, message = "EXTENSION_PENDING", "An extension is already being decided"


class IdempotencyKeyTaken(Conflict):
    """A request with the same Idempotency-Key was inserted first (the caller may replay it)."""

    code, message = "IDEMPOTENCY_IN_PROGRESS", "The same request is still being processed"


UNIQUE: dict[str, type[ApiError]] = {
    "cc_users_email_key": EmailTaken,
    "mitras_phone_key": PhoneTaken,
    "pricing_tiers_mode_minutes_key": TierExists,
    "otp_bypass_entries_phone_key": BypassExists,
    "payment_requests_one_open": OpenRequestExists,
    "payment_requests_idempotency_key": IdempotencyKeyTaken,
    "chat_sessions_one_open_per_customer": ChatAlreadyOpen,
    "session_extensions_one_open": ExtensionPending,
}


class ReferenceMissing(Conflict):
    code, message = "REFERENCE_MISSING", "It refers to a record that does not exist (any more)"


def translate(exc: psycopg.IntegrityError | psycopg.DataError) -> ApiError:
    """The domain error a violation stands for: a listed unique constraint's own 409, else 409 for
    a unique, foreign-key or exclusion violation and 422 for a CHECK, a NOT NULL or a value the
    column cannot hold. Only the listed unique constraints are expected: the rest are logged, as a
    schema should have refused that input first (or a row above is missing)."""
    name = exc.diag.constraint_name or exc.diag.column_name or ""
    if isinstance(exc, psycopg.errors.UniqueViolation) and name in UNIQUE:
        return UNIQUE[name]()
    log.warning("%s on %s reached the database boundary", type(exc).__name__, name or "?")
    if isinstance(exc, psycopg.errors.ForeignKeyViolation):
        return ReferenceMissing()
    if isinstance(exc, psycopg.errors.UniqueViolation | psycopg.errors.ExclusionViolation):
        return Conflict("This conflicts with an existing record")
    # CHECK, NOT NULL, out-of-range numbers, malformed values: the input, not the server, is wrong.
    return ValidationFailed({"_schema": ["A value is out of range or not allowed."]})
