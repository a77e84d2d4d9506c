"""Development only: the named mitra accepts the newest open request notified to it, through the real accept path."""

from typing import Any

import falcon

from functions._shapes import Session
from functions.internal.testing._mitras import MitraRef, mitra_id_of
from lib.chat.pairing import REQUEST_ORDER, mitra_requests
from lib.endpoint import Auth, Ctx, Endpoint
from lib.errors import NotFound


class Body(MitraRef):
    """The mitra, by mitra_id or phone."""


ENDPOINT = Endpoint(
    method="POST",
    route="/internal/_test/accept-latest-pending",
    auth=Auth.NONE,
    body=Body,
    dev_only=True,
    response=Session,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    s = ctx.services
    mitra_id = mitra_id_of(s.db, ctx.body)
    # The list the mitra's app shows (GET /api/mitra/chat-requests/pending), newest first: its first item.
    newest = mitra_requests(s.db, mitra_id, open_only=True, position=REQUEST_ORDER.first(1))
    if not newest:
        raise NotFound("No open request is waiting for this mitra", code="NO_PENDING_REQUEST")
    # Capacity, inactive account and a race with another accept answer as the app's accept would.
    return s.chat.accept(mitra_id, str(newest[0]["session_id"]))
