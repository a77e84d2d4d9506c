"""One session's record: who was asked, extensions, reroutes and topic flips, who read the transcript (never the transcript)."""

from typing import Any

import falcon
from marshmallow import Schema, fields

from functions._shapes import AdminSession, Id, Time, nullable
from lib.chat.control import session_record
from lib.endpoint import Auth, Ctx, Endpoint


class Notification(Schema):
    mitra_id = Id()
    request_type = fields.String()
    status = fields.String()
    notified_at = Time()
    responded_at = nullable(Time)


class TopicChange(Schema):
    changed_by_type = fields.String()
    changed_by = nullable(Id)
    old_value = nullable(fields.String)
    new_value = fields.String()
    confirmed = fields.Boolean()
    created_at = Time()


class TranscriptRead(Schema):
    cc_user_id = Id()
    reason = fields.String()
    messages = fields.Integer()
    created_at = Time()


class TopicRead(Schema):
    cc_user_id = Id()
    filter = nullable(fields.String)
    created_at = Time()


class SessionRecord(AdminSession):
    notifications = fields.List(fields.Nested(Notification))
    extensions = fields.List(fields.Dict())
    reroutes = fields.List(fields.Dict())
    topic_changes = fields.List(fields.Nested(TopicChange))
    transcript_reads = fields.List(fields.Nested(TranscriptRead))
    topic_reads = fields.List(fields.Nested(TopicRead))


ENDPOINT = Endpoint(
    method="GET",
    route="/internal/sessions/{session_id:uuid}",
    auth=Auth.CC_USER,
    permission="sessions.read",
    response=SessionRecord,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    return session_record(ctx.services.db, str(ctx.params["session_id"]))
