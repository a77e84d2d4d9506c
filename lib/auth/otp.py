"""One-time codes by SMS: request (cooldown, limits, bypass list) and verify (attempts, single use).

Our otp_requests row is the authority for every limit whoever makes the code: with a provider that
checks its own codes (Twilio Verify) the row stores no hash, and the provider is asked only once
the row has allowed the attempt (docs/otp.md)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import bcrypt

from lib.auth.accounts import mask_phone
from lib.auth.otp_providers import Check, OtpProvider, OtpProviderFailed
from lib.config.app import AppConfig
from lib.db import Database
from lib.errors import (
    ApiError,
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    RateLimited,
    Unauthorized,
    ValidationFailed,
)
from lib.ratelimit import RateLimiter
from lib.requests_ip import network_of

log = logging.getLogger(__name__)

_PHONE = re.compile(r"^\+62[1-9][0-9]{7,12}$")
_CODE = re.compile(r"^[0-9]{6}$")


def normalize_phone(raw: str) -> str:
    """E.164 for Indonesia (+62...); 08... and 62... are accepted and rewritten."""
    phone = re.sub(r"[\s()-]", "", raw or "")
    if phone.startswith("08"):
        phone = "+62" + phone[1:]
    elif phone.startswith("62"):
        phone = "+" + phone
    if not _PHONE.match(phone):
        raise ValidationFailed(
            {"phone": ["Must be an Indonesian number in E.164 form, e.g. +6281234567890."]},
            code="PHONE_INVALID",
        )
    return phone


def _code_hash(secret: str, request_id: str, code: str) -> str:
    key = hmac.new(secret.encode(), b"halobestie otp v1", hashlib.sha256).digest()
    return hmac.new(key, f"{request_id}:{code}".encode(), hashlib.sha256).hexdigest()


def hash_bypass_code(code: str) -> str:
    return bcrypt.hashpw(code.encode(), bcrypt.gensalt(10)).decode()


@dataclass(frozen=True)
class OtpSent:
    otp_request_id: str
    masked_phone: str
    expires_at: datetime
    resend_available_at: datetime

    def doc(self) -> dict[str, Any]:
        return {
            "otp_request_id": self.otp_request_id,
            "masked_phone": self.masked_phone,
            "expires_at": self.expires_at,
            "resend_available_at": self.resend_available_at,
        }


def check_mitra_phone(db: Database, phone: str) -> None:
    row = db.fetch_one("SELECT is_active FROM mitras WHERE phone = %(phone)s", {"phone": phone})
    if row is None:
        raise NotFound("No Bestie account uses this number", code="ACCOUNT_NOT_FOUND")
    if not row["is_active"]:
        raise Forbidden("This Bestie account is inactive", code="ACCOUNT_INACTIVE")


def request_code(
    db: Database,
    cfg: AppConfig,
    limiter: RateLimiter,
    secret: str,
    provider: OtpProvider,
    *,
    flow: str,
    raw_phone: str,
    client_ip: str,
) -> OtpSent:
    """Send a code (or arm a bypass entry); `secret` keys the stored code hashes."""
    phone = normalize_phone(raw_phone)
    limiter.hit(
        "otp-ip",
        network_of(client_ip),
        cfg.int("otp_max_per_ip_per_hour"),
        3600,
        code="OTP_RATE_LIMIT_IP",
        message="Too many codes requested from this network",
    )
    if flow == "mitra":
        check_mitra_phone(db, phone)
    cooldown = cfg.int("otp_resend_cooldown_seconds")
    request_id = str(uuid.uuid4())
    code = None if provider.checks_codes else f"{secrets.randbelow(1_000_000):06d}"
    with db.connection() as conn:
        # One request per phone at a time, so the cooldown and hourly count cannot be raced.
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('otp:' || %(phone)s, 0))", {"phone": phone})
        recent = conn.execute(
            "SELECT count(*) AS n, max(created_at) AS last, now() AS now FROM otp_requests "
            "WHERE phone = %(phone)s AND created_at > now() - interval '1 hour'",
            {"phone": phone},
        ).fetchone()
        assert recent is not None
        if recent["last"] is not None:
            wait = cooldown - (recent["now"] - recent["last"]).total_seconds()
            if wait > 0:
                raise RateLimited(
                    "Please wait before requesting another code",
                    code="OTP_COOLDOWN",
                    retry_after=int(wait) + 1,
                )
        if recent["n"] >= cfg.int("otp_max_per_phone_per_hour"):
            raise RateLimited(
                "Too many codes for this number; try again later",
                code="OTP_RATE_LIMIT_PHONE",
                retry_after=3600,
            )
        bypass = None
        if cfg.bool("otp_bypass_enabled"):
            bypass = conn.execute(
                "SELECT id FROM otp_bypass_entries WHERE phone = %(phone)s AND expires_at > now()", {"phone": phone}
            ).fetchone()
        row = conn.execute(
            "INSERT INTO otp_requests (id, flow, phone, code_hash, bypass_id, max_attempts, client_ip, expires_at) "
            "VALUES (%(request_id)s, %(flow)s, %(phone)s, %(code_hash)s, %(bypass_id)s, %(max_attempts)s, %(client_ip)s, "
            "now() + make_interval(secs => %(ttl_seconds)s)) "
            "RETURNING created_at, expires_at",
            {
                "request_id": request_id,
                "flow": flow,
                "phone": phone,
                "code_hash": None if bypass or code is None else _code_hash(secret, request_id, code),
                "bypass_id": bypass["id"] if bypass else None,
                "max_attempts": cfg.int("otp_max_attempts"),
                "client_ip": client_ip,
                "ttl_seconds": cfg.int("otp_ttl_seconds"),
            },
        ).fetchone()
        assert row is not None
    if bypass is None:
        _send(db, provider, request_id, phone, code)
    return OtpSent(
        request_id,
        mask_phone(phone) or "",
        row["expires_at"],
        row["created_at"] + timedelta(seconds=cooldown),
    )


def _send(db: Database, provider: OtpProvider, request_id: str, phone: str, code: str | None) -> None:
    try:
        provider.send(phone, code)
    except OtpProviderFailed as failed:
        if not failed.maybe_sent:
            # Certainly nothing was sent: forget the request, so it counts against no limit.
            db.execute("DELETE FROM otp_requests WHERE id = %(request_id)s", {"request_id": request_id})
        # Otherwise a code may be on its way: the row stays and keeps counting (cooldown, hourly
        # limit), so retries are paced by our limits; its id never reached the app.
        raise
    if provider.checks_codes:
        # The provider keeps one code per number and checks by number: an older open request for
        # this number must not accept the code sent for this one.
        db.execute(
            "UPDATE otp_requests SET expires_at = now() WHERE phone = %(phone)s AND id <> %(request_id)s "
            "AND code_hash IS NULL AND bypass_id IS NULL AND consumed_at IS NULL AND expires_at > now()",
            {"phone": phone, "request_id": request_id},
        )


_ATTEMPT = """
UPDATE otp_requests SET attempts = attempts + 1
WHERE id = %(request_id)s AND consumed_at IS NULL AND attempts < max_attempts AND expires_at > now()
RETURNING attempts, max_attempts
"""


def _refuse(row: dict[str, Any], flow: str, cooldown: int) -> ApiError | None:
    if row["flow"] != flow:
        return Conflict("This code belongs to another sign-in flow", code="WRONG_FLOW")
    if row["consumed_at"] is not None:
        return Conflict("This code was already used", code="OTP_USED")
    if row["attempts"] >= row["max_attempts"]:
        return RateLimited(
            "Too many wrong codes; request a new one",
            code="OTP_ATTEMPTS_EXCEEDED",
            retry_after=max(1, int(cooldown - row["age"])),
        )
    if row["expires_at"] <= row["now"]:
        return Gone("This code has expired; request a new one", code="OTP_EXPIRED")
    return None


def verify_code(
    db: Database, cfg: AppConfig, secret: str, provider: OtpProvider, *, flow: str, request_id: str, code: str
) -> str:
    """Consume the code; returns the verified phone number. The provider is asked only about a code
    it made, and only once the row has counted the attempt."""
    if not _CODE.match(code or ""):
        raise ValidationFailed({"code": ["Must be 6 digits."]}, code="CODE_INVALID")
    cooldown = cfg.int("otp_resend_cooldown_seconds")
    select = (
        "SELECT o.*, b.code_hash AS bypass_hash, b.expires_at AS bypass_expires_at, now() AS now, "
        "extract(epoch FROM now() - o.created_at) AS age "
        "FROM otp_requests o LEFT JOIN otp_bypass_entries b ON b.id = o.bypass_id WHERE o.id = %(request_id)s"
    )
    with db.connection() as conn:
        row = conn.execute(select, {"request_id": request_id}).fetchone()
        if row is None:
            raise NotFound("Unknown code request", code="OTP_NOT_FOUND")
        refusal = _refuse(row, flow, cooldown)
        if refusal is not None:
            raise refusal
        counted = conn.execute(_ATTEMPT, {"request_id": request_id}).fetchone()
    if counted is None:  # lost a race with another attempt: report what the row says now
        row = db.fetch_one(select, {"request_id": request_id})
        assert row is not None
        raise _refuse(row, flow, cooldown) or Conflict("This code was already used", code="OTP_USED")
    if row["bypass_id"] is None and row["code_hash"] is None:
        matched = _provider_says(db, provider, row, code, cooldown)
    else:
        matched = _matches(cfg, secret, row, request_id, code)
    if not matched:
        raise _mismatch()
    used = db.fetch_one(
        "UPDATE otp_requests SET consumed_at = now() WHERE id = %(request_id)s AND consumed_at IS NULL RETURNING phone",
        {"request_id": request_id},
    )
    if used is None:
        raise Conflict("This code was already used", code="OTP_USED")
    phone: str = used["phone"]
    return phone


def _mismatch() -> Unauthorized:
    # No count of the tries left: the original never told a guesser how many it still had (issue 26).
    return Unauthorized("Wrong code", code="CODE_MISMATCH")


def _provider_says(db: Database, provider: OtpProvider, row: dict[str, Any], code: str, cooldown: int) -> bool:
    """Ask the provider that made the code; raises OtpProviderFailed (502) when it cannot answer."""
    outcome = provider.check(row["phone"], code)
    if outcome in (Check.APPROVED, Check.WRONG):
        return outcome is Check.APPROVED
    # The provider will accept nothing more for this request: our row follows, unless a concurrent
    # attempt has just consumed it (the provider forgets an approved code at once).
    closing = (
        "UPDATE otp_requests SET expires_at = least(expires_at, now()) WHERE id = %(request_id)s AND consumed_at IS NULL "
        "RETURNING id"
        if outcome is Check.EXPIRED
        else "UPDATE otp_requests SET attempts = max_attempts WHERE id = %(request_id)s AND consumed_at IS NULL RETURNING id"
    )
    if db.fetch_one(closing, {"request_id": row["id"]}) is None:
        raise Conflict("This code was already used", code="OTP_USED")
    if outcome is Check.WRONG_LAST:
        raise _mismatch()
    if outcome is Check.EXPIRED:
        raise Gone("This code has expired; request a new one", code="OTP_EXPIRED")
    raise RateLimited(
        "Too many wrong codes; request a new one",
        code="OTP_ATTEMPTS_EXCEEDED",
        retry_after=max(1, int(cooldown - row["age"])),
    )


def _matches(cfg: AppConfig, secret: str, row: dict[str, Any], request_id: str, code: str) -> bool:
    if row["bypass_id"] is not None:
        still_valid = (
            row["bypass_hash"] is not None and row["bypass_expires_at"] > row["now"] and cfg.bool("otp_bypass_enabled")
        )
        return still_valid and bcrypt.checkpw(code.encode(), row["bypass_hash"].encode())
    expected = _code_hash(secret, request_id, code)
    return hmac.compare_digest(expected, row["code_hash"] or "")
