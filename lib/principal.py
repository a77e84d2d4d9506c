"""The verified caller of a request or a socket, taken from its access token."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: decided from the access token alone (no database lookup)."""

    user_type: str
    user_id: str
    session_id: str
    role: str | None = None
    expires_at: int = 0
