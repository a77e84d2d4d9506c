"""OTP provider settings are checked at start-up; the Twilio client tells 'nothing sent' from 'maybe
sent' (real HTTP against the loopback fake, or a port nobody listens on)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from lib.auth.otp_providers import Check, OtpProviderFailed, StubOtpProvider, TwilioVerify, make_otp_provider
from lib.config.env import ConfigError, Settings, load_settings
from runtime.app import create_app
from tests.fakes import FakeTwilioVerify
from tests.helpers import free_port

ACCOUNT = "AC" + "1a" * 16
TOKEN = "twilio-auth-token-" + "7e" * 8
SERVICE = "VA" + "2b" * 16
PHONE = "+6281234567890"
TWILIO = Settings(
    app_env="production",
    otp_provider="twilio_verify",
    twilio_account_sid=ACCOUNT,
    twilio_auth_token=TOKEN,
    twilio_verify_service_sid=SERVICE,
)


def test_twilio_settings_are_read_from_the_environment_and_the_token_is_not_shown() -> None:
    loaded = load_settings(
        {
            "OTP_PROVIDER": "Twilio_Verify",
            "TWILIO_ACCOUNT_SID": ACCOUNT,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "TWILIO_VERIFY_SERVICE_SID": SERVICE,
            "TWILIO_VERIFY_CHANNEL": "WhatsApp",
            "TWILIO_TIMEOUT_SECONDS": "2.5",
            "TWILIO_BASE_URL": "https://verify.example.test/",
        }
    )
    assert (loaded.otp_provider, loaded.twilio_verify_channel, loaded.twilio_timeout_seconds) == (
        "twilio_verify",
        "whatsapp",
        2.5,
    )
    assert loaded.twilio_base_url == "https://verify.example.test"
    assert TOKEN not in repr(loaded)
    loaded.check_otp_provider()
    assert isinstance(make_otp_provider(loaded), TwilioVerify)
    defaults = load_settings({})
    assert (defaults.otp_provider, defaults.twilio_base_url, defaults.twilio_verify_channel) == (
        "stub",
        "https://verify.twilio.com",
        "sms",
    )
    assert isinstance(make_otp_provider(defaults), StubOtpProvider)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"otp_provider": "fazpass"}, "OTP_PROVIDER must be one of stub, twilio_verify"),
        ({"twilio_auth_token": ""}, "needs TWILIO_AUTH_TOKEN"),
        ({"twilio_account_sid": "", "twilio_verify_service_sid": ""}, "TWILIO_ACCOUNT_SID, TWILIO_VERIFY_SERVICE_SID"),
        ({"twilio_account_sid": "AC123"}, "TWILIO_ACCOUNT_SID must be"),
        ({"twilio_verify_service_sid": "VA../../Accounts"}, "TWILIO_VERIFY_SERVICE_SID must be"),
        ({"twilio_verify_channel": "call"}, "TWILIO_VERIFY_CHANNEL must be one of sms, whatsapp"),
        ({"twilio_base_url": "http://verify.twilio.com"}, "TWILIO_BASE_URL must be https://"),
        ({"otp_provider": "stub"}, "OTP_ALLOW_STUB"),
    ],
)
def test_misconfigured_provider_stops_start_up(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        replace(TWILIO, **changes).check_otp_provider()


def test_valid_twilio_settings_pass_in_production_and_an_api_key_works_too() -> None:
    TWILIO.check_otp_provider()
    replace(TWILIO, twilio_account_sid="SK" + "3c" * 16).check_otp_provider()
    replace(TWILIO, app_env="test", twilio_base_url="http://127.0.0.1:9").check_otp_provider()


def test_public_listener_refuses_twilio_without_its_token(settings: Settings) -> None:
    broken = replace(
        settings, otp_provider="twilio_verify", twilio_account_sid=ACCOUNT, twilio_verify_service_sid=SERVICE
    )
    with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN"):
        create_app("public", settings=broken)


@pytest.fixture
def twilio() -> Iterator[FakeTwilioVerify]:
    with FakeTwilioVerify(ACCOUNT, TOKEN, SERVICE).running() as fake:
        yield fake


def _client(base_url: str, token: str = TOKEN, timeout: float = 0.5) -> TwilioVerify:
    return TwilioVerify(base_url, ACCOUNT, token, SERVICE, channel="whatsapp", timeout=timeout)


def test_send_and_check(twilio: FakeTwilioVerify) -> None:
    client = _client(twilio.url)
    client.send(PHONE, None)
    assert twilio.sent == [{"to": PHONE, "channel": "whatsapp", "code": twilio.last_code(PHONE)}]
    assert client.check(PHONE, "000000" if twilio.last_code(PHONE) != "000000" else "111111") is Check.WRONG
    assert client.check(PHONE, twilio.last_code(PHONE)) is Check.APPROVED
    assert client.check(PHONE, twilio.last_code(PHONE)) is Check.EXPIRED  # approved codes are forgotten


def test_nothing_listening_means_nothing_sent() -> None:
    with pytest.raises(OtpProviderFailed) as failed:
        _client(f"http://127.0.0.1:{free_port()}").send(PHONE, None)
    assert failed.value.maybe_sent is False
    assert (failed.value.status, failed.value.code) == (502, "OTP_PROVIDER_FAILED")


@pytest.mark.parametrize(
    ("setup", "maybe_sent"),
    [
        ({"fail_next": 1}, True),  # 5xx
        ({"answer_delay": 1.0}, True),  # timeout after sending
        ({"refuse_next": (429, 60203)}, False),  # Twilio's own send limit
        ({"refuse_next": (400, 60200)}, False),
    ],
)
def test_send_failures_say_whether_a_code_may_be_on_its_way(
    twilio: FakeTwilioVerify, setup: dict[str, object], maybe_sent: bool
) -> None:
    for name, value in setup.items():
        setattr(twilio, name, value)
    with pytest.raises(OtpProviderFailed) as failed:
        _client(twilio.url).send(PHONE, None)
    assert failed.value.maybe_sent is maybe_sent


def test_wrong_credentials_are_a_provider_failure(twilio: FakeTwilioVerify) -> None:
    with pytest.raises(OtpProviderFailed) as failed:
        _client(twilio.url, token="not-the-token").send(PHONE, None)
    assert failed.value.maybe_sent is False
    assert twilio.sent == []


def test_check_answers_that_are_not_about_the_code_are_failures(twilio: FakeTwilioVerify) -> None:
    client = _client(twilio.url)
    client.send(PHONE, None)
    twilio.refuse_next = (401, 20003)
    with pytest.raises(OtpProviderFailed):
        client.check(PHONE, twilio.last_code(PHONE))
    twilio.fail_next = 1
    with pytest.raises(OtpProviderFailed):
        client.check(PHONE, twilio.last_code(PHONE))
    assert client.check(PHONE, twilio.last_code(PHONE)) is Check.APPROVED
