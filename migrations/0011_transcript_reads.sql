-- The control center reads a transcript only through POST /internal/sessions/{id}/transcript,
-- which writes one row here (who, why, how many messages) in the same transaction as the read.
CREATE TABLE transcript_reads (
    id          bigserial PRIMARY KEY,
    session_id  uuid NOT NULL REFERENCES chat_sessions (id),
    cc_user_id  uuid NOT NULL REFERENCES cc_users (id),
    reason      text NOT NULL CHECK (length(reason) BETWEEN 3 AND 500),
    messages    integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transcript_reads_session_idx ON transcript_reads (session_id, created_at);
