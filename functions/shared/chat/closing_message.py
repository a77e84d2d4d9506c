"""Leave one goodbye message, or skip it, while the session is closing."""

from typing import Any

import falcon
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from functions._shapes import Session
from lib.chat.messages import MAX_LENGTH
from lib.endpoint import Auth, Ctx, Endpoint


class Body(Schema):
    content = fields.String(validate=validate.Length(1, MAX_LENGTH))
    skip = fields.Boolean(load_default=False)

    @validates_schema
    def _one_of(self, data: dict[str, Any], **_: Any) -> None:
        if bool(data.get("content")) == bool(data.get("skip")):
            raise ValidationError("Send either content or skip: true.", "_schema")


ENDPOINT = Endpoint(
    method="POST",
    route="/api/shared/chat/{session_id:uuid}/closing-message",
    auth=Auth.ANY_APP_USER,
    body=Body,
    response=Session,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    content = None if ctx.body.get("skip") else ctx.body["content"]
    return ctx.services.chat.closing_message(ctx.principal, str(ctx.params["session_id"]), content)
