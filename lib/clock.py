"""The one clock handlers and jobs read (ctx.now), so tests and logs agree on UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
