"""Which database constraint means which domain error. Races are settled by these constraints
(STYLE.md 7); lib.db translates the driver's UniqueViolation through this one table, so no caller
inspects driver errors or constraint names itself."""

from __future__ import annotations

import logging

import psycopg

from lib.errors import ApiError, Conflict

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


def translate(exc: psycopg.errors.UniqueViolation) -> ApiError:
    """The domain error a unique violation stands for; an unlisted one is a plain 409 (and a
    warning: it deserves a row above)."""
    name = exc.diag.constraint_name or ""
    error = UNIQUE.get(name)
    if error is None:
        log.warning("unique violation on %s has no domain error in lib/constraints.py", name or "?")
        return Conflict("This conflicts with an existing record")
    return error()
