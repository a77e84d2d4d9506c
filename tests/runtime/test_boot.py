"""Start-up checks: SERVER_TZ pinned on the process and every DB session, [tz] log line."""

from __future__ import annotations

import logging
import os
import time

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from lib.config.env import ConfigError, Settings
from runtime import boot
from runtime.container import build_services


@pytest.fixture
def restore_tz():
    saved = os.environ.get("TZ")
    yield
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


def test_pool_sessions_are_pinned(make_settings) -> None:
    svc = build_services(make_settings(server_tz="Asia/Jakarta"))
    try:
        row = svc.db.fetch_one(
            "SELECT current_setting('TimeZone') AS tz, to_char(timestamptz '2026-01-01 00:00Z', 'HH24') AS local_hour"
        )
    finally:
        svc.close()
    assert row == {"tz": "Asia/Jakarta", "local_hour": "07"}


def test_tz_matching_logs_info(settings: Settings, restore_tz, caplog: pytest.LogCaptureFixture) -> None:
    boot.init_process(settings)
    with caplog.at_level(logging.INFO, logger="runtime.boot"):
        assert boot.check_timezone(settings) is True
    assert "[tz] process=UTC db_session=UTC" in caplog.text
    assert time.strftime("%Z") == "UTC"


def test_tz_mismatch_is_loud(settings: Settings, restore_tz, caplog: pytest.LogCaptureFixture) -> None:
    dbname = str(conninfo_to_dict(settings.database_url)["dbname"])
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET TimeZone = 'Asia/Jakarta'").format(sql.Identifier(dbname)))
    boot.init_process(settings)
    with caplog.at_level(logging.INFO, logger="runtime.boot"):
        assert boot.check_timezone(settings) is False
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning
    assert "[tz] MISMATCH" in warning[0].getMessage()
    assert "db_default=Asia/Jakarta" in warning[0].getMessage()


def test_unknown_server_tz_is_fatal(restore_tz) -> None:
    with pytest.raises(ConfigError, match="SERVER_TZ"):
        boot.init_process(Settings(server_tz="Mars/Olympus"))


def test_unreachable_database_is_reported_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    from tests.helpers import free_port

    s = Settings(database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    with caplog.at_level(logging.WARNING, logger="runtime.boot"):
        assert boot.check_timezone(s) is False
    assert "database unreachable" in caplog.text
