"""Who delivers one-time codes: the development stub (we make the code, it logs it) or Twilio Verify
(it makes, sends and checks the code). docs/otp.md says why and what each failure answers."""

from __future__ import annotations

import enum
import logging
from typing import Any, Protocol

import requests
from urllib3.exceptions import NewConnectionError

from lib.config.env import Settings
from lib.errors import BadGateway

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.05
# Twilio error codes that are answers about the code, not failures (twilio.com/docs/api/errors).
_NOT_FOUND = 20404  # no pending verification for this number: expired, approved or used up
_MAX_CHECKS = 60202  # max check attempts reached


class OtpProviderFailed(BadGateway):
    """The provider could not be asked, or refused. `maybe_sent`: the request may have reached it,
    so a code may be on its way (a timeout after sending, a 5xx); False when it certainly was not."""

    code, message = "OTP_PROVIDER_FAILED", "Could not send or check the code; try again shortly"

    def __init__(self, *, maybe_sent: bool) -> None:
        super().__init__()
        self.maybe_sent = maybe_sent


class Check(enum.Enum):
    """What the provider says about a code it made."""

    APPROVED = "approved"
    WRONG = "wrong"
    WRONG_LAST = "wrong_last"  # wrong, and the provider will check no more codes for it
    EXHAUSTED = "exhausted"  # the provider refused to check: its tries were used up
    EXPIRED = "expired"  # the provider holds no code for this number any more


_CHECK_STATUS = {"approved": Check.APPROVED, "pending": Check.WRONG, "max_attempts_reached": Check.WRONG_LAST}


class OtpProvider(Protocol):
    name: str
    # True: the provider makes, sends and checks the code (we store no hash); False: we make the
    # code, store its hash, and the provider only delivers it.
    checks_codes: bool

    def send(self, phone: str, code: str | None) -> None:
        """Deliver `code` to `phone` (None when the provider makes its own); raises OtpProviderFailed."""

    def check(self, phone: str, code: str) -> Check:
        """Ask the provider about a code it made (checks_codes only); raises OtpProviderFailed."""


class StubOtpProvider:
    """Development only: logs the code. Refused in production unless OTP_ALLOW_STUB=true."""

    name = "stub"
    checks_codes = False

    def send(self, phone: str, code: str | None) -> None:
        log.info("[OTP STUB] phone=%s code=%s", phone, code)

    def check(self, phone: str, code: str) -> Check:
        # Only a request made while another provider was configured lands here: nothing can check it.
        return Check.EXPIRED


class TwilioVerify:
    """Twilio Verify v2: POST /v2/Services/{sid}/Verifications (send) and /VerificationCheck (check),
    form-encoded, Basic auth. The phone number and the code travel only in the request body; logs
    carry the operation, the HTTP status and Twilio's numeric error code, never Twilio's message
    (it can quote the number). No retries: a second send is a second SMS, a second check a second
    try; the user retries within our limits instead."""

    name = "twilio_verify"
    checks_codes = True

    def __init__(
        self, base_url: str, account_sid: str, auth_token: str, service_sid: str, *, channel: str, timeout: float
    ) -> None:
        self._url = f"{base_url.rstrip('/')}/v2/Services/{service_sid}"
        self._channel = channel
        self._timeout = (CONNECT_TIMEOUT, timeout)
        self._session = requests.Session()
        self._session.auth = (account_sid, auth_token)
        self._session.headers["Accept"] = "application/json"

    def send(self, phone: str, code: str | None) -> None:
        response = self._post("send", "/Verifications", {"To": phone, "Channel": self._channel})
        if response.status_code >= 300:
            # A 4xx is Twilio refusing (bad number, blocked country, its own send limit): nothing was sent.
            raise self._refused("send", response, maybe_sent=response.status_code >= 500)

    def check(self, phone: str, code: str) -> Check:
        response = self._post("check", "/VerificationCheck", {"To": phone, "Code": code})
        if response.status_code < 300:
            status = _json(response).get("status")
            if not isinstance(status, str):
                raise self._refused("check", response, maybe_sent=True)
            if status in _CHECK_STATUS:
                return _CHECK_STATUS[status]
            log.warning("twilio verify check: the verification is %.20s", status)  # canceled, expired, ...
            return Check.EXPIRED
        error = _error_code(response)
        if error == _MAX_CHECKS:
            return Check.EXHAUSTED
        if response.status_code == 404 and error in (_NOT_FOUND, None):
            # Gone at Twilio (expired, approved or used up). A wrong service SID also answers 404,
            # but then no send would have worked either: the send's errors tell operators.
            log.warning("twilio verify check: no pending verification (error %s)", error)
            return Check.EXPIRED
        raise self._refused("check", response, maybe_sent=True)

    def _post(self, op: str, path: str, form: dict[str, str]) -> requests.Response:
        try:
            return self._session.post(self._url + path, data=form, timeout=self._timeout)
        except requests.RequestException as exc:
            reached = not _never_connected(exc)
            log.error("twilio verify %s: no answer (%s)", op, type(exc).__name__)
            raise OtpProviderFailed(maybe_sent=reached) from None  # the cause quotes the URL, nothing more

    @staticmethod
    def _refused(op: str, response: requests.Response, *, maybe_sent: bool) -> OtpProviderFailed:
        log.error("twilio verify %s: HTTP %s (error %s)", op, response.status_code, _error_code(response))
        return OtpProviderFailed(maybe_sent=maybe_sent)


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _error_code(response: requests.Response) -> int | None:
    code = _json(response).get("code")
    return code if isinstance(code, int) else None


def _never_connected(exc: requests.RequestException) -> bool:
    """True when no connection was made, so nothing reached Twilio."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(exc, requests.ConnectionError) and isinstance(reason, NewConnectionError)


def make_otp_provider(settings: Settings) -> OtpProvider:
    """The provider OTP_PROVIDER names; Settings.check_otp_provider has vetted its settings."""
    if settings.otp_provider == "twilio_verify":
        return TwilioVerify(
            settings.twilio_base_url,
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            settings.twilio_verify_service_sid,
            channel=settings.twilio_verify_channel,
            timeout=settings.twilio_timeout_seconds,
        )
    return StubOtpProvider()
