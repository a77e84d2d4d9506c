-- Mitra presence: online state with its last heartbeat, every online/offline change, and the chat
-- sessions whose live count is a mitra's used capacity (later migrations extend chat_sessions).

CREATE TABLE mitra_online_status (
    mitra_id          uuid PRIMARY KEY REFERENCES mitras (id),
    is_online         boolean NOT NULL DEFAULT false,
    last_heartbeat_at timestamptz,
    changed_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mitra_online_status_online_idx ON mitra_online_status (mitra_id) WHERE is_online;

CREATE TABLE mitra_online_logs (
    id         bigserial PRIMARY KEY,
    mitra_id   uuid NOT NULL REFERENCES mitras (id),
    is_online  boolean NOT NULL,
    reason     text NOT NULL CHECK (reason IN ('manual', 'stale_sweep', 'deactivation')),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mitra_online_logs_mitra_idx ON mitra_online_logs (mitra_id, created_at DESC, id DESC);

CREATE TABLE chat_sessions (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id uuid NOT NULL REFERENCES customers (id),
    mitra_id    uuid REFERENCES mitras (id),
    mode        text NOT NULL DEFAULT 'chat' CHECK (mode IN ('chat', 'call')),
    status      text NOT NULL CHECK (status IN ('searching', 'active', 'extending', 'closing', 'completed',
                                                'cancelled', 'expired')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    expires_at  timestamptz,
    ended_at    timestamptz
);
-- A mitra's live sessions (its used capacity) without scanning history.
CREATE INDEX chat_sessions_live_by_mitra_idx ON chat_sessions (mitra_id)
    WHERE status IN ('active', 'extending', 'closing');

-- One row per scheduled job: a tick is claimed by one conditional UPDATE, so replicas never double-run.
CREATE TABLE job_schedule (
    name        text PRIMARY KEY,
    next_run_at timestamptz NOT NULL DEFAULT now(),
    last_run_at timestamptz,
    last_owner  text
);
