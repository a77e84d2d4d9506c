"""Logging: JSON or text by LOG_FORMAT, the request id on every line, tokens scrubbed."""

from __future__ import annotations

import json
import logging

import pytest

from lib import log as logsetup
from lib.log import JsonFormatter, TextFormatter, request_id_var, scrub


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.getLogger("t").makeRecord("t", logging.INFO, __file__, 1, msg, args, None)


def test_json_line_has_request_id_and_extras() -> None:
    token = request_id_var.set("req-1")
    try:
        record = _record("hello %s", "world")
    finally:
        request_id_var.reset(token)
    record.status = 201
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "hello world"
    assert line["request_id"] == "req-1"
    assert line["status"] == 201
    assert line["level"] == "info"
    assert line["ts"].endswith("Z")


def test_text_line_has_request_id() -> None:
    token = request_id_var.set("req-2")
    try:
        line = TextFormatter().format(_record("hi"))
    finally:
        request_id_var.reset(token)
    assert "[req-2]" in line
    assert line.endswith("t: hi")


def test_outside_a_request_the_id_is_a_dash() -> None:
    assert json.loads(JsonFormatter().format(_record("x")))["request_id"] == "-"


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer abc.def-ghi",
        "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ],
)
def test_tokens_are_scrubbed(text: str) -> None:
    out = scrub(text)
    assert "[redacted]" in out
    assert "abc.def-ghi" not in out
    assert "dozjgNryP4J3" not in out


def test_configure_is_idempotent() -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    logsetup.configure("text", "INFO")
    logsetup.configure("json", "INFO")
    ours = [h for h in root.handlers if getattr(h, "_halobestie", False)]
    assert len(ours) == 1
    assert isinstance(ours[0].formatter, JsonFormatter)
    for h in ours:
        root.removeHandler(h)
    assert len(root.handlers) <= before
