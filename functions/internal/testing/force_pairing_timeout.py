"""Development only: a searching session's search window ends now, with the outcome the deadline job gives."""

from typing import Any

import falcon
from marshmallow import Schema, ValidationError, fields, validates_schema

from functions._shapes import Pairing
from lib.chat.pairing import pairing_doc
from lib.endpoint import Auth, Ctx, Endpoint
from lib.errors import Conflict, NotFound


class Body(Schema):
    """The search, by its session_id or by its customer_id (that customer's open search): exactly one."""

    session_id = fields.UUID(load_default=None)
    customer_id = fields.UUID(load_default=None)

    @validates_schema
    def _one_of(self, data: dict[str, Any], **_: Any) -> None:
        if (data.get("session_id") is None) == (data.get("customer_id") is None):
            raise ValidationError("Name the search by session_id or by customer_id (exactly one).", "_schema")


ENDPOINT = Endpoint(
    method="POST",
    route="/internal/_test/force-pairing-timeout",
    auth=Auth.NONE,
    body=Body,
    dev_only=True,
    response=Pairing,
)

_SESSION = (
    "SELECT s.*, m.display_name AS targeted_name FROM chat_sessions s "
    "LEFT JOIN mitras m ON m.id = s.targeted_mitra_id WHERE s.id = %(session_id)s"
)


class NotSearching(Conflict):
    code, message = "NOT_SEARCHING", "This session is not searching for a mitra"


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    s = ctx.services
    session_id = _searched(ctx)
    # Bring the deadline to now; then the worker's own deadline firing (the chat_deadlines job's
    # expire_searches) ends it: a blast fails with PAIRING_TIMEOUT, a targeted request with
    # RETURNING_CHAT_TIMEOUT and the fallback window, with the same events, rows and metrics.
    moved = s.db.fetch_one(
        "UPDATE chat_sessions SET search_expires_at = least(search_expires_at, now()) "
        "WHERE id = %(session_id)s AND status = 'searching' RETURNING id",
        {"session_id": session_id},
    )
    if moved is None:
        raise _not_searching(s.db.fetch_one(_SESSION, {"session_id": session_id}))
    s.chat.expire_searches()
    with s.db.connection() as conn:
        # FOR SHARE waits for a worker that claimed this row first (SKIP LOCKED passed it over here).
        row = conn.execute(_SESSION + " FOR SHARE OF s", {"session_id": session_id}).fetchone()
    assert row is not None
    return pairing_doc(row, row["targeted_name"])


def _searched(ctx: Ctx) -> str:
    body = ctx.body
    if body["session_id"] is not None:
        row = ctx.services.db.fetch_one(_SESSION, {"session_id": body["session_id"]})
        if row is None:
            raise NotFound("No such session", code="SESSION_NOT_FOUND")
        if row["status"] != "searching":
            raise _not_searching(row)
        return str(row["id"])
    found = ctx.services.db.fetch_one(
        "SELECT id FROM chat_sessions WHERE customer_id = %(customer_id)s AND status = 'searching' "
        "ORDER BY created_at DESC LIMIT 1",
        {"customer_id": body["customer_id"]},
    )
    if found is None:
        raise NotSearching("This customer has no search in progress")
    return str(found["id"])


def _not_searching(row: dict[str, Any] | None) -> Conflict:
    return NotSearching(details={"status": row["status"] if row else None})
