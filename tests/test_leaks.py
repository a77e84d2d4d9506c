"""Nothing a customer confides leaks sideways (issue 15, item 5): not into logs, pushes or error
details, whatever the path. The markers below are written through every free-text route, good and
bad input alike, and must appear nowhere but in the parties' own reads."""

from __future__ import annotations

import logging
import sys
import uuid

import psycopg
import pytest

from lib.log import JsonFormatter, TextFormatter
from lib.push import PUSHES, push_data
from lib.services import Services
from tests.chatflow import Chat
from tests.conftest import bearer

SAID = "rahasia-yang-kuceritakan"
TOO_LONG = "rahasia-terlalu-panjang"
GOODBYE = "rahasia-perpisahan"


def _formatted(records: list[logging.LogRecord]) -> str:
    return "\n".join(f.format(r) for r in records for f in (JsonFormatter(), TextFormatter()))


def test_no_content_or_topic_in_logs_or_error_details(chat: Chat, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    customer, _, mitra_token, session_id = chat.paired()
    me = bearer(customer["access_token"])
    url = f"/api/shared/chat/{session_id}/messages"
    sent = chat.app.simulate_post(url, headers=me, json={"client_message_id": str(uuid.uuid4()), "content": SAID})
    assert sent.status_code == 201
    long = chat.app.simulate_post(
        url, headers=me, json={"client_message_id": str(uuid.uuid4()), "content": TOO_LONG * 200}
    )
    assert long.status_code == 422
    assert TOO_LONG not in long.text  # the rule, never the text
    wrong = chat.app.simulate_post(url, headers=me, json={"client_message_id": "x", "content": [TOO_LONG]})
    assert wrong.status_code == 422
    assert TOO_LONG not in wrong.text
    flip = chat.app.simulate_patch(
        f"/api/shared/chat/sessions/{session_id}/topic",
        headers=bearer(mitra_token),
        json={"topic_sensitivity": "sensitive", "confirmed": True},
    )
    assert flip.status_code == 200, flip.text
    chat.due_now(session_id, "expires_at")
    chat.tick()
    bye = chat.app.simulate_post(
        f"/api/shared/chat/{session_id}/closing-message", headers=me, json={"content": GOODBYE}
    )
    assert bye.status_code in (200, 201), bye.text
    logged = _formatted(caplog.records)
    assert caplog.records  # the flow logged something, so the check below means something
    for secret in (SAID, TOO_LONG, GOODBYE, "sensitive"):
        assert secret not in logged


def test_a_failing_row_never_reaches_a_log_line(services: Services) -> None:
    """PostgreSQL repeats a violating row's values in its DETAIL line; the log keeps the constraint."""
    with psycopg.connect(services.settings.database_url, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE confided (said text UNIQUE CHECK (said <> 'too much'))")
        conn.execute("INSERT INTO confided VALUES (%s)", [SAID])
        for value in (SAID, "too much"):
            try:
                conn.execute("INSERT INTO confided VALUES (%s)", [value])
            except psycopg.IntegrityError:
                record = logging.getLogger("t").makeRecord(
                    "t", logging.ERROR, __file__, 1, "insert failed", (), sys.exc_info()
                )
                line = _formatted([record])
                assert "confided" in line  # the constraint is named
                assert SAID not in line
                assert "too much" not in line
            else:
                pytest.fail("the insert should have failed")


@pytest.mark.parametrize("event_type", sorted(PUSHES))
def test_no_push_carries_content_or_topic(event_type: str) -> None:
    data = {"session_id": "s-1", "content": SAID, "topic_sensitivity": "sensitive", "mitra_name": "Ayu"}
    payload = push_data(event_type, data)
    texts = " ".join([*PUSHES[event_type], *payload.values()])
    assert SAID not in texts
    assert "sensitive" not in texts.lower()
