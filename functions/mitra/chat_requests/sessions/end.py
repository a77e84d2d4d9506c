"""End the chat early as its Bestie, at the original's path (same as /api/mitra/sessions/{id}/end)."""

from functions._shapes import Session
from functions.mitra.sessions.end import handle
from lib.endpoint import Auth, Endpoint

__all__ = ["ENDPOINT", "handle"]

# The same handler as /api/mitra/sessions/{id}/end (lib.chat.lifecycle.end_early): refused with
# EARLY_END_DISABLED unless early_end_mitra_enabled, and only for the session's own Bestie.
ENDPOINT = Endpoint(
    method="POST", route="/api/mitra/chat-requests/sessions/{session_id:uuid}/end", auth=Auth.MITRA, response=Session
)
