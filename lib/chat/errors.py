"""The errors a chat session answers with when it is not in the state an action needs."""

from __future__ import annotations

from lib.errors import Conflict


class SessionNotActive(Conflict):
    code, message = "SESSION_NOT_ACTIVE", "This chat is not in progress"


class SessionPaused(Conflict):
    code, message = "SESSION_PAUSED", "This chat is paused while an extension is decided and paid"


class SessionNotClosing(Conflict):
    code, message = "SESSION_NOT_CLOSING", "This chat is not closing"


class MitraUnavailable(Conflict):
    code, message = "MITRA_UNAVAILABLE", "This Bestie is not available right now"
