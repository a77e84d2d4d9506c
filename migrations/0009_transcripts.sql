-- Transcripts sealed at rest (lib/transcripts.py): one data key per master key of the ring,
-- wrapped by it; every message row carries its data key id, nonce and AES-GCM ciphertext instead
-- of its text. Rows written before this stay readable in `content` until
-- `python -m runtime rotate-chat-key` seals them. The 1..4000 character rule is the app's now
-- (lib/chat/messages.py): the database no longer sees the text.
CREATE TABLE chat_data_keys (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    master_key_id text NOT NULL UNIQUE,
    nonce         bytea NOT NULL,
    wrapped       bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE chat_messages
    ALTER COLUMN content DROP NOT NULL,
    DROP CONSTRAINT chat_messages_content_check,
    ADD COLUMN key_id     uuid REFERENCES chat_data_keys (id),
    ADD COLUMN nonce      bytea,
    ADD COLUMN ciphertext bytea,
    ADD CONSTRAINT chat_messages_sealed_or_legacy CHECK (
        (ciphertext IS NOT NULL AND key_id IS NOT NULL AND nonce IS NOT NULL AND content IS NULL)
        OR (ciphertext IS NULL AND key_id IS NULL AND nonce IS NULL AND content IS NOT NULL)
    );
-- rotate-chat-key walks the rows not yet under the active data key.
CREATE INDEX chat_messages_key_idx ON chat_messages (key_id);

-- Retention (functions/jobs/chat_retention.py): a session's messages are deleted
-- CHAT_RETENTION_DAYS after it ended; the session row (times, tier, amount, parties) stays,
-- stamped here.
ALTER TABLE chat_sessions ADD COLUMN transcript_purged_at timestamptz;
CREATE INDEX chat_sessions_retention_idx ON chat_sessions ((COALESCE(completed_at, updated_at)))
    WHERE transcript_purged_at IS NULL;
