"""Deploy-fixed settings: defaults, numeric parsing, and secrets that stop start-up."""

from __future__ import annotations

import logging

import pytest

from lib.config.env import ConfigError, Settings, check_jwt_secret, env_bool, env_int, load_settings
from runtime.app import create_app
from runtime.container import build_services


def test_defaults_from_an_empty_environment() -> None:
    s = load_settings({})
    assert (s.app_env, s.public_port, s.internal_host, s.internal_port, s.realtime_port) == (
        "production",
        3000,
        "127.0.0.1",
        3001,
        3002,
    )
    assert (s.access_token_ttl_seconds, s.refresh_token_ttl_days, s.server_tz) == (3600, 30, "UTC")
    assert s.mitra_heartbeat_cadence_seconds == 30
    assert s.log_format == "json"
    assert not s.is_dev_or_test  # development hooks are mounted only when asked for by name


def test_values_are_parsed() -> None:
    s = load_settings(
        {
            "PUBLIC_PORT": " 8080 ",
            "CC_ORIGIN": "https://cc.example, https://b.example",
            "APP_ENV": "production",
            "LOG_FORMAT": "TEXT",
            "DB_POOL_TIMEOUT_SECONDS": "1.5",
        }
    )
    assert s.public_port == 8080
    assert s.cc_origin == ("https://cc.example", "https://b.example")
    assert s.app_env == "production"
    assert s.log_format == "text"
    assert s.db_pool_timeout == 1.5


@pytest.mark.parametrize("raw", ["", "   ", "abc", "30s", "-5", "99999999"])
def test_bad_numbers_fall_back_to_default(raw: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        value = env_int(
            "MITRA_HEARTBEAT_CADENCE_SECONDS",
            30,
            minimum=1,
            maximum=3600,
            environ={"MITRA_HEARTBEAT_CADENCE_SECONDS": raw},
        )
    assert value == 30
    if raw.strip():
        assert "MITRA_HEARTBEAT_CADENCE_SECONDS" in caplog.text


def test_bools() -> None:
    assert env_bool("X", False, {"X": "true"}) is True
    assert env_bool("X", True, {"X": "off"}) is False
    assert env_bool("X", True, {"X": "maybe"}) is True


def test_unknown_app_env_is_fatal() -> None:
    with pytest.raises(ConfigError, match="APP_ENV"):
        load_settings({"APP_ENV": "prod"})


def test_web_server_is_granian_unless_chosen() -> None:
    assert load_settings({}).web_server == "granian"
    assert load_settings({"WEB_SERVER": "Gunicorn"}).web_server == "gunicorn"
    with pytest.raises(ConfigError, match="WEB_SERVER"):
        load_settings({"WEB_SERVER": "uvicorn"})


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        ("", "not set"),
        ("short-secret", "at least 32 bytes"),
        ("change-me-please-to-something-long-and-random", "placeholder"),
        ("a" * 40, "placeholder"),
    ],
)
def test_bad_jwt_secrets_are_refused(secret: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        check_jwt_secret(secret)


def test_app_refuses_to_start_with_a_short_secret() -> None:
    with pytest.raises(ConfigError, match="AUTH_JWT_SECRET"):
        create_app("public", settings=Settings(auth_jwt_secret="too-short"))


def test_secrets_are_not_in_repr() -> None:
    s = Settings(auth_jwt_secret="x" * 40, admin_password="hunter2hunter2")
    assert "hunter2" not in repr(s)
    assert "x" * 40 not in repr(s)


def test_missing_database_url_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL is not set"):
        build_services(Settings(redis_url="redis://127.0.0.1:6379/0"))
