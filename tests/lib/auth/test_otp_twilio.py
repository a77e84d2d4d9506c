"""Phone sign-in through Twilio Verify: the real endpoints and the real HTTP client against a loopback
fake of Twilio's API, for customers and mitras; our limits hold before Twilio is asked; failures are
502 OTP_PROVIDER_FAILED; no number, code or token reaches a log, a URL or an error."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from falcon import testing

from lib.auth.otp import hash_bypass_code
from lib.config.app import set_values
from lib.config.env import Settings
from lib.services import Services
from tests.fakes import FakeTwilioVerify

PHONE = "+6281234567890"
ACCOUNT = "AC" + "1a" * 16
TOKEN = "twilio-auth-token-" + "7e" * 8
SERVICE = "VA" + "2b" * 16
PATHS = {
    "customer": ("/api/client/auth/otp/request", "/api/client/auth/otp/verify"),
    "mitra": ("/api/mitra/auth/otp/request", "/api/mitra/auth/otp/verify"),
}


@pytest.fixture
def twilio() -> Iterator[FakeTwilioVerify]:
    with FakeTwilioVerify(ACCOUNT, TOKEN, SERVICE).running() as fake:
        yield fake


@pytest.fixture
def settings(settings: Settings, twilio: FakeTwilioVerify) -> Settings:
    return replace(
        settings,
        otp_provider="twilio_verify",
        twilio_account_sid=ACCOUNT,
        twilio_auth_token=TOKEN,
        twilio_verify_service_sid=SERVICE,
        twilio_base_url=twilio.url,
        twilio_timeout_seconds=0.5,
    )


@pytest.fixture(params=["customer", "mitra"])
def flow(request: pytest.FixtureRequest, make_mitra) -> str:
    if request.param == "mitra":
        make_mitra(PHONE)
    return str(request.param)


def _request(public: testing.TestClient, flow: str) -> testing.Result:
    return public.simulate_post(PATHS[flow][0], json={"phone": PHONE}, remote_addr="10.0.0.1")


def _verify(public: testing.TestClient, flow: str, rid: str, code: str) -> testing.Result:
    return public.simulate_post(PATHS[flow][1], json={"otp_request_id": rid, "code": code})


def _rid(result: testing.Result) -> str:
    assert result.status_code == 200, result.text
    return str(result.json["data"]["otp_request_id"])


def _error(result: testing.Result, status: int, code: str) -> dict[str, Any]:
    assert result.status_code == status, result.text
    assert result.json["error"]["code"] == code
    details: dict[str, Any] = result.json["error"]["details"]
    return details


def _config(services: Services, **values: Any) -> None:
    set_values(services.db, services.bus, values, None)
    services.config.invalidate()


def _past_cooldown(services: Services) -> None:
    services.db.execute("UPDATE otp_requests SET created_at = created_at - interval '2 minutes'")


def _wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


def _rows(services: Services) -> int:
    row = services.db.fetch_one("SELECT count(*) AS n FROM otp_requests")
    assert row is not None
    return int(row["n"])


def test_sign_in_with_the_code_twilio_sent(public: testing.TestClient, services: Services, twilio, flow) -> None:
    rid = _rid(_request(public, flow))
    sent = twilio.requests[-1]
    assert sent["path"] == f"/v2/Services/{SERVICE}/Verifications"
    assert sent["form"] == {"To": PHONE, "Channel": "sms"}
    assert sent["auth"] == "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    row = services.db.fetch_one("SELECT code_hash, bypass_id FROM otp_requests")
    assert row == {"code_hash": None, "bypass_id": None}  # Twilio holds the code; we hold the limits
    result = _verify(public, flow, rid, twilio.last_code(PHONE))
    assert result.status_code == 200, result.text
    assert result.json["data"]["user_type"] == flow
    assert twilio.requests[-1]["form"] == {"To": PHONE, "Code": twilio.last_code(PHONE)}
    assert PHONE not in twilio.pending  # approved: Twilio forgets it
    _error(_verify(public, flow, rid, twilio.last_code(PHONE)), 409, "OTP_USED")
    assert twilio.checks == 1  # single use is ours: Twilio was not asked again


def test_wrong_code_is_401_without_the_tries_left(public: testing.TestClient, twilio, flow) -> None:
    rid = _rid(_request(public, flow))
    code = twilio.last_code(PHONE)
    details = _error(_verify(public, flow, rid, _wrong(code)), 401, "CODE_MISMATCH")
    assert details == {}  # a guesser is not told how many tries are left
    assert _verify(public, flow, rid, code).status_code == 200
    assert twilio.checks == 2


def test_our_attempt_limit_is_enforced_before_twilio_is_asked(
    public: testing.TestClient, services: Services, twilio
) -> None:
    _config(services, otp_max_attempts=3)
    rid = _rid(_request(public, "customer"))
    code = twilio.last_code(PHONE)
    for _ in range(3):
        assert _error(_verify(public, "customer", rid, _wrong(code)), 401, "CODE_MISMATCH") == {}
    _error(_verify(public, "customer", rid, code), 429, "OTP_ATTEMPTS_EXCEEDED")
    assert twilio.checks == 3


def test_flow_and_expiry_are_ours(public: testing.TestClient, services: Services, make_mitra, twilio) -> None:
    make_mitra(PHONE)
    rid = _rid(_request(public, "mitra"))
    _error(_verify(public, "customer", rid, twilio.last_code(PHONE)), 409, "WRONG_FLOW")
    services.db.execute("UPDATE otp_requests SET expires_at = now() - interval '1 second'")
    _error(_verify(public, "mitra", rid, twilio.last_code(PHONE)), 410, "OTP_EXPIRED")
    assert twilio.checks == 0


def test_code_twilio_no_longer_holds_is_410_and_the_request_is_closed(public: testing.TestClient, twilio) -> None:
    rid = _rid(_request(public, "customer"))
    code = twilio.last_code(PHONE)
    twilio.pending.clear()  # expired or cancelled at Twilio
    _error(_verify(public, "customer", rid, code), 410, "OTP_EXPIRED")
    _error(_verify(public, "customer", rid, code), 410, "OTP_EXPIRED")
    assert twilio.checks == 1


def test_twilio_check_limit_is_429_and_closes_the_request(
    public: testing.TestClient, services: Services, twilio
) -> None:
    _config(services, otp_max_attempts=10)  # above Twilio's 5: docs/otp.md says to keep it at 5 or less
    rid = _rid(_request(public, "customer"))
    code = twilio.last_code(PHONE)
    for _ in range(FakeTwilioVerify.MAX_CHECKS):
        _error(_verify(public, "customer", rid, _wrong(code)), 401, "CODE_MISMATCH")
    _error(_verify(public, "customer", rid, code), 429, "OTP_ATTEMPTS_EXCEEDED")  # Twilio's 60202
    _error(_verify(public, "customer", rid, code), 429, "OTP_ATTEMPTS_EXCEEDED")
    assert twilio.checks == FakeTwilioVerify.MAX_CHECKS + 1


def test_a_new_code_closes_the_older_request_for_the_number(
    public: testing.TestClient, services: Services, twilio
) -> None:
    first = _rid(_request(public, "customer"))
    _past_cooldown(services)
    second = _rid(_request(public, "customer"))
    code = twilio.last_code(PHONE)
    _error(_verify(public, "customer", first, code), 410, "OTP_EXPIRED")
    assert twilio.checks == 0
    assert _verify(public, "customer", second, code).status_code == 200


def test_twilio_5xx_on_send_is_502_and_the_request_still_counts(
    public: testing.TestClient, services: Services, twilio, flow
) -> None:
    twilio.fail_next = 1
    details = _error(_request(public, flow), 502, "OTP_PROVIDER_FAILED")
    assert details == {}
    assert _rows(services) == 1  # a 5xx does not prove nothing was sent: our limits pace the retry
    _error(_request(public, flow), 429, "OTP_COOLDOWN")
    _past_cooldown(services)
    rid = _rid(_request(public, flow))
    assert _verify(public, flow, rid, twilio.last_code(PHONE)).status_code == 200


def test_twilio_timeout_on_send_keeps_the_request_and_the_retry_works(
    public: testing.TestClient, services: Services, twilio, flow
) -> None:
    twilio.answer_delay = 1.0  # Twilio sends the SMS, the answer comes after our 0.5 s
    _error(_request(public, flow), 502, "OTP_PROVIDER_FAILED")
    twilio.answer_delay = 0
    assert len(twilio.sent) == 1  # the SMS did go out
    assert _rows(services) == 1
    _error(_request(public, flow), 429, "OTP_COOLDOWN")
    _past_cooldown(services)
    rid = _rid(_request(public, flow))
    assert twilio.sent[0]["code"] == twilio.sent[1]["code"]  # Twilio re-sent its pending code
    assert _verify(public, flow, rid, twilio.last_code(PHONE)).status_code == 200


def test_twilio_refusing_the_send_is_502_and_forgets_the_request(
    public: testing.TestClient, services: Services, twilio, flow
) -> None:
    twilio.refuse_next = (403, 60605)  # e.g. SMS to this country not enabled in the Twilio console
    _error(_request(public, flow), 502, "OTP_PROVIDER_FAILED")
    assert _rows(services) == 0  # certainly nothing sent: no cooldown, no count
    rid = _rid(_request(public, flow))
    assert _verify(public, flow, rid, twilio.last_code(PHONE)).status_code == 200


def test_twilio_5xx_on_check_is_502_and_the_attempt_counts(
    public: testing.TestClient, services: Services, twilio, flow
) -> None:
    rid = _rid(_request(public, flow))
    twilio.fail_next = 1
    _error(_verify(public, flow, rid, twilio.last_code(PHONE)), 502, "OTP_PROVIDER_FAILED")
    details = _error(_verify(public, flow, rid, _wrong(twilio.last_code(PHONE))), 401, "CODE_MISMATCH")
    assert details == {}
    assert services.db.fetch_one("SELECT attempts FROM otp_requests WHERE id = %(id)s", {"id": rid}) == {"attempts": 2}
    assert _verify(public, flow, rid, twilio.last_code(PHONE)).status_code == 200


def test_twilio_timeout_on_check_is_502(public: testing.TestClient, twilio, flow) -> None:
    rid = _rid(_request(public, flow))
    code = twilio.last_code(PHONE)
    twilio.delay = 1.0
    _error(_verify(public, flow, rid, _wrong(code)), 502, "OTP_PROVIDER_FAILED")
    twilio.delay = 0
    assert _verify(public, flow, rid, code).status_code == 200


def test_timed_out_check_that_twilio_approved_asks_for_a_new_code(public: testing.TestClient, twilio) -> None:
    rid = _rid(_request(public, "customer"))
    code = twilio.last_code(PHONE)
    twilio.delay = 1.0
    _error(_verify(public, "customer", rid, code), 502, "OTP_PROVIDER_FAILED")
    twilio.delay = 0
    deadline = time.monotonic() + 5
    while PHONE in twilio.pending and time.monotonic() < deadline:
        time.sleep(0.05)
    # Twilio approved and forgot it after we stopped waiting: the honest answer is "request a new one".
    _error(_verify(public, "customer", rid, code), 410, "OTP_EXPIRED")


def test_bypass_entries_never_reach_twilio(public: testing.TestClient, services: Services, twilio, flow) -> None:
    services.db.execute(
        "INSERT INTO otp_bypass_entries (phone, code_hash, expires_at) VALUES (%(p)s, %(h)s, now() + interval '1 day')",
        {"p": PHONE, "h": hash_bypass_code("424242")},
    )
    _config(services, otp_bypass_enabled=True)
    rid = _rid(_request(public, flow))
    assert _verify(public, flow, rid, "424242").status_code == 200
    assert twilio.requests == []


def test_no_number_code_or_token_in_logs_urls_or_errors(
    public: testing.TestClient, services: Services, twilio, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answers = []
    twilio.fail_next = 1
    answers.append(_request(public, "customer"))
    _past_cooldown(services)
    twilio.refuse_next = (400, 60200)
    answers.append(_request(public, "customer"))
    twilio.answer_delay = 1.0
    answers.append(_request(public, "customer"))
    twilio.answer_delay = 0
    _past_cooldown(services)
    rid = _rid(_request(public, "customer"))
    code = twilio.last_code(PHONE)
    answers.append(_verify(public, "customer", rid, _wrong(code)))
    twilio.fail_next = 1
    answers.append(_verify(public, "customer", rid, code))
    twilio.delay = 1.0
    answers.append(_verify(public, "customer", rid, _wrong(code)))
    twilio.delay = 0
    answers.append(_verify(public, "customer", rid, code))
    assert [a.status_code for a in answers] == [502, 502, 502, 401, 502, 502, 200]

    secrets = {
        PHONE,
        PHONE[1:],
        "%2B" + PHONE[1:],
        code,
        TOKEN,
        base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode(),
    }
    formatter = logging.Formatter()
    for record in caplog.records:
        text = record.getMessage() + (formatter.formatException(record.exc_info) if record.exc_info else "")
        assert not [s for s in secrets if s in text], text
    assert "twilio verify send: HTTP 503 (error 20500)" in caplog.text  # what operators do see
    assert "twilio verify send: no answer (ReadTimeout)" in caplog.text
    assert "[OTP STUB]" not in caplog.text
    for answer in answers[:-1]:
        assert not [s for s in secrets if s in answer.text], answer.text
    for sent in twilio.requests:
        assert not [s for s in secrets if s in sent["path"]], sent["path"]
