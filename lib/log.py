"""Logging: JSON or text lines, the request id on every line, tokens and row values scrubbed as a
last line of defence."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from contextvars import ContextVar
from typing import Any

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

# Handlers never log secrets; this catches accidents (a header dumped in an exception message).
_SCRUB = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_STD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


# PostgreSQL's DETAIL line of an error repeats the row's values ("Failing row contains (...)", "Key
# (phone)=(...)"): a constraint violation would put a customer's data in a traceback. The message
# line above it names the constraint, which is what an operator needs.
_DETAIL = re.compile(r"^DETAIL: .*$", re.MULTILINE)


def scrub(text: str) -> str:
    text = _SCRUB.sub(lambda m: (m.group(1) or "") + "[redacted]", text)
    return _DETAIL.sub("DETAIL: [redacted]", text) if "DETAIL:" in text else text


_base_factory = logging.getLogRecordFactory()


def _record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    # Every record, whichever handler formats it, carries the id of the request that caused it.
    record = _base_factory(*args, **kwargs)
    record.request_id = request_id_var.get()
    return record


if getattr(_base_factory, "__name__", "") != "_record_factory":
    logging.setLogRecordFactory(_record_factory)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
            "request_id": getattr(record, "request_id", "-"),
        }
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s")
        self.converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def configure(log_format: str = "json", level: str = "INFO") -> None:
    """Install one stderr handler on the root logger; idempotent."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_halobestie", False):
            root.removeHandler(old)
    handler._halobestie = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level if level in logging.getLevelNamesMapping() else "INFO")
