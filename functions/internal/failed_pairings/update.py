"""Record the review of a failed pairing: status (open / reviewed / refunded) and notes."""

from typing import Any

import falcon
from marshmallow import Schema, fields, validate

from functions._shapes import PairingFailure
from lib.endpoint import Auth, Ctx, Endpoint
from lib.errors import NotFound


class Body(Schema):
    review_status = fields.String(validate=validate.OneOf(["open", "reviewed", "refunded"]))
    notes = fields.String(validate=validate.Length(0, 2000))


ENDPOINT = Endpoint(
    method="PATCH",
    route="/internal/failed-pairings/{failure_id:uuid}",
    auth=Auth.CC_USER,
    permission="payments.manage",
    body=Body,
    response=PairingFailure,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    row = ctx.services.db.fetch_one(
        "UPDATE pairing_failures SET review_status = COALESCE(%(review_status)s, review_status), notes = COALESCE(%(notes)s, notes), "
        "reviewed_by = %(reviewed_by)s, reviewed_at = now(), updated_at = now() WHERE id = %(failure_id)s RETURNING *",
        {
            "review_status": ctx.body.get("review_status"),
            "notes": ctx.body.get("notes"),
            "reviewed_by": ctx.principal.user_id,
            "failure_id": ctx.params["failure_id"],
        },
    )
    if row is None:
        raise NotFound()
    return row
