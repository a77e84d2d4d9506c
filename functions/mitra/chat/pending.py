"""The open requests this Bestie was asked to take, at the original's path (same as chat-requests/pending)."""

from functions._shapes import ChatRequest
from functions.mitra.chat_requests.pending import handle
from lib.endpoint import Auth, Endpoint
from lib.pagination import PageQuery

__all__ = ["ENDPOINT", "handle"]

# The same list, query and order as /api/mitra/chat-requests/pending: one handler, two paths.
ENDPOINT = Endpoint(
    method="GET", route="/api/mitra/chat/pending", auth=Auth.MITRA, query=PageQuery, response=ChatRequest
)
