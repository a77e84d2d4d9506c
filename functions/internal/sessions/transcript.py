"""Read one session's transcript, audited with who and why (the control center's only way to it)."""

from typing import Any

import falcon
from marshmallow import Schema, fields

from functions._shapes import Id, Message, Time, nullable
from lib.endpoint import Auth, Ctx, Endpoint
from lib.fields import ReasonBody

# A POST, so the reason travels in the body, never in a URL that proxies and access logs keep.


class Transcript(Schema):
    session_id = Id()
    transcript_purged_at = nullable(Time)
    messages = fields.List(fields.Nested(Message))


ENDPOINT = Endpoint(
    method="POST",
    route="/internal/sessions/{session_id:uuid}/transcript",
    auth=Auth.CC_USER,
    permission="transcripts.read",
    body=ReasonBody,
    response=Transcript,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    assert ctx.principal is not None
    return ctx.services.chat.read_transcript(str(ctx.params["session_id"]), ctx.principal.user_id, ctx.body["reason"])
