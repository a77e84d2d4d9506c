-- Reads of the session list that showed the topic's sensitivity (docs/privacy.md): who, which
-- filter, and which sessions the page showed. Written in the same transaction as the read.
CREATE TABLE topic_reads (
    id          bigserial PRIMARY KEY,
    cc_user_id  uuid NOT NULL REFERENCES cc_users (id),
    filter      text CHECK (filter IN ('normal', 'sensitive')),
    sessions    uuid[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX topic_reads_sessions_idx ON topic_reads USING gin (sessions);
