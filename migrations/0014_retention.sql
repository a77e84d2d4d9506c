-- Webhook callbacks record the length and SHA-256 (hex) of the body they received, so a refused
-- (unauthenticated) callback can keep only a bounded prefix of it in raw_body and still say what
-- came (lib/payments/webhook.py). NULL on rows written before this migration.
ALTER TABLE webhook_logs
    ADD COLUMN body_length integer CHECK (body_length >= 0),
    ADD COLUMN body_sha256 text CHECK (body_sha256 ~ '^[0-9a-f]{64}$');

-- The retention job (functions/jobs/retention.py) deletes old rows in small batches by age; these
-- let each batch find its rows by an index range scan instead of a sequential scan.
-- (webhook_logs has webhook_logs_received_idx, revoked sessions auth_sessions_revoked_idx.)
CREATE INDEX otp_requests_created_idx ON otp_requests (created_at);
CREATE INDEX security_events_created_idx ON security_events (created_at);
CREATE INDEX auth_sessions_expires_idx ON auth_sessions (expires_at);
