-- Pairing and the session lifecycle (DOMAIN.md "Pairing", "Session lifecycle"): chat sessions grown
-- to the whole lifecycle, the mitras asked for each request, messages, extensions, topic audit and
-- reroutes. Every deadline is a column here, found by a partial index and fired by the worker.

-- A confirmed payment buys a session (kind 'session'); an approved extension is paid by its own
-- request (kind 'extension'). Only session payments count as a customer's one open request.
ALTER TABLE payment_requests
    ADD COLUMN kind text NOT NULL DEFAULT 'session' CHECK (kind IN ('session', 'extension')),
    ADD COLUMN extension_id uuid;
DROP INDEX payment_requests_one_open;
CREATE UNIQUE INDEX payment_requests_one_open ON payment_requests (customer_id)
    WHERE status IN ('pending', 'confirmed') AND kind = 'session';
CREATE INDEX payment_requests_confirmed_idx ON payment_requests (confirmed_at) WHERE status = 'confirmed';

ALTER TABLE chat_sessions
    ADD COLUMN payment_request_id uuid REFERENCES payment_requests (id),
    ADD COLUMN request_type       text NOT NULL DEFAULT 'blast' CHECK (request_type IN ('blast', 'targeted')),
    ADD COLUMN targeted_mitra_id  uuid REFERENCES mitras (id),
    ADD COLUMN duration_minutes   integer NOT NULL DEFAULT 0 CHECK (duration_minutes >= 0),
    ADD COLUMN topic_sensitivity  text NOT NULL DEFAULT 'normal' CHECK (topic_sensitivity IN ('normal', 'sensitive')),
    -- searching: until when the blast or the targeted mitra may accept
    ADD COLUMN search_expires_at  timestamptz,
    -- why a search ended without a mitra (no_mitra_available, blast_timeout, RETURNING_CHAT_TIMEOUT, cancelled)
    ADD COLUMN failure_cause      text,
    ADD COLUMN failure_reason     text,
    -- after a targeted failure: until when the customer may fall back to a blast with the same payment
    ADD COLUMN choice_expires_at  timestamptz,
    ADD COLUMN paused_at          timestamptz,   -- extending: the clock stops here
    ADD COLUMN closing_expires_at timestamptz,   -- closing: the goodbye grace ends here
    ADD COLUMN customer_closing   text CHECK (customer_closing IN ('message', 'skipped')),
    ADD COLUMN mitra_closing      text CHECK (mitra_closing IN ('message', 'skipped')),
    ADD COLUMN ended_by           text CHECK (ended_by IN ('customer', 'mitra', 'system', 'system_auto_close')),
    ADD COLUMN completed_at       timestamptz,
    ADD COLUMN updated_at         timestamptz NOT NULL DEFAULT now();

-- One open session per customer (searching or live) and per payment: ALREADY_ACTIVE and
-- idempotent pairing starts are settled here.
CREATE UNIQUE INDEX chat_sessions_one_open_per_customer ON chat_sessions (customer_id)
    WHERE status IN ('searching', 'active', 'extending', 'closing');
CREATE UNIQUE INDEX chat_sessions_one_open_per_payment ON chat_sessions (payment_request_id)
    WHERE status IN ('searching', 'active', 'extending', 'closing');
CREATE INDEX chat_sessions_customer_idx ON chat_sessions (customer_id, created_at DESC, id DESC);
CREATE INDEX chat_sessions_mitra_idx ON chat_sessions (mitra_id, created_at DESC, id DESC);
CREATE INDEX chat_sessions_created_idx ON chat_sessions (created_at DESC, id DESC);
-- The deadlines, one partial index each.
CREATE INDEX chat_sessions_search_due_idx ON chat_sessions (search_expires_at) WHERE status = 'searching';
CREATE INDEX chat_sessions_end_due_idx ON chat_sessions (expires_at) WHERE status = 'active';
CREATE INDEX chat_sessions_closing_due_idx ON chat_sessions (closing_expires_at) WHERE status = 'closing';
CREATE INDEX chat_sessions_choice_due_idx ON chat_sessions (choice_expires_at) WHERE choice_expires_at IS NOT NULL;

-- Every mitra asked to take a request, and what became of it.
CREATE TABLE chat_request_notifications (
    id           bigserial PRIMARY KEY,
    session_id   uuid NOT NULL REFERENCES chat_sessions (id),
    mitra_id     uuid NOT NULL REFERENCES mitras (id),
    request_type text NOT NULL CHECK (request_type IN ('blast', 'targeted')),
    status       text NOT NULL DEFAULT 'notified'
                 CHECK (status IN ('notified', 'accepted', 'declined', 'missed', 'ignored')),
    notified_at  timestamptz NOT NULL DEFAULT now(),
    responded_at timestamptz,
    UNIQUE (session_id, mitra_id)
);
CREATE INDEX chat_request_notifications_mitra_idx ON chat_request_notifications (mitra_id, notified_at DESC, id DESC);
CREATE INDEX chat_request_notifications_open_idx ON chat_request_notifications (mitra_id) WHERE status = 'notified';

-- Messages: text for now (kind leaves room for media). The seq orders a session's messages for
-- `?after=`; client_message_id makes a send idempotent per sender.
CREATE TABLE chat_messages (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq               bigint GENERATED ALWAYS AS IDENTITY,
    session_id        uuid NOT NULL REFERENCES chat_sessions (id),
    sender_type       text NOT NULL CHECK (sender_type IN ('customer', 'mitra')),
    sender_id         uuid NOT NULL,
    client_message_id text NOT NULL,
    kind              text NOT NULL DEFAULT 'text' CHECK (kind IN ('text', 'closing')),
    content           text NOT NULL CHECK (char_length(content) BETWEEN 1 AND 4000),
    status            text NOT NULL DEFAULT 'sent' CHECK (status IN ('sent', 'delivered', 'read')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    delivered_at      timestamptz,
    read_at           timestamptz,
    UNIQUE (session_id, sender_id, client_message_id)
);
CREATE INDEX chat_messages_session_seq_idx ON chat_messages (session_id, seq);
CREATE INDEX chat_messages_unread_idx ON chat_messages (session_id, sender_type) WHERE status <> 'read';

-- Extensions: requested with a tier, decided by the mitra (or the default action at the
-- deadline), then paid through their own payment request.
CREATE TABLE session_extensions (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id         uuid NOT NULL REFERENCES chat_sessions (id),
    tier_id            uuid NOT NULL REFERENCES pricing_tiers (id),
    duration_minutes   integer NOT NULL CHECK (duration_minutes > 0),
    price              integer NOT NULL CHECK (price >= 0),
    status             text NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'approved', 'rejected', 'paid', 'expired', 'cancelled')),
    decided_by         text CHECK (decided_by IN ('mitra', 'auto_approve', 'auto_reject')),
    requested_at       timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,   -- the mitra's decision is due here
    decided_at         timestamptz,
    payment_request_id uuid REFERENCES payment_requests (id),
    pay_by             timestamptz,            -- approved: the customer's payment is due here
    paid_at            timestamptz
);
CREATE UNIQUE INDEX session_extensions_one_open ON session_extensions (session_id)
    WHERE status IN ('pending', 'approved');
CREATE INDEX session_extensions_session_idx ON session_extensions (session_id, requested_at DESC);
CREATE INDEX session_extensions_decision_due_idx ON session_extensions (expires_at) WHERE status = 'pending';
CREATE INDEX session_extensions_payment_due_idx ON session_extensions (pay_by) WHERE status = 'approved';
CREATE INDEX session_extensions_unbilled_idx ON session_extensions (decided_at)
    WHERE status = 'approved' AND payment_request_id IS NULL;

ALTER TABLE payment_requests
    ADD CONSTRAINT payment_requests_extension_id_fkey FOREIGN KEY (extension_id) REFERENCES session_extensions (id);
-- One payment request per extension: a second invoice for the same minutes is never issued.
CREATE UNIQUE INDEX payment_requests_one_per_extension ON payment_requests (extension_id) WHERE extension_id IS NOT NULL;

-- Every flip of a session's topic sensitivity.
CREATE TABLE session_topic_audit (
    id              bigserial PRIMARY KEY,
    session_id      uuid NOT NULL REFERENCES chat_sessions (id),
    changed_by_type text NOT NULL CHECK (changed_by_type IN ('mitra', 'cc_user')),
    changed_by      uuid NOT NULL,
    old_value       text NOT NULL,
    new_value       text NOT NULL,
    confirmed       boolean NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX session_topic_audit_session_idx ON session_topic_audit (session_id, created_at DESC);

-- Sessions moved to another mitra by the control center.
CREATE TABLE session_reroutes (
    id             bigserial PRIMARY KEY,
    session_id     uuid NOT NULL REFERENCES chat_sessions (id),
    from_mitra_id  uuid NOT NULL REFERENCES mitras (id),
    to_mitra_id    uuid NOT NULL REFERENCES mitras (id),
    rerouted_by    uuid REFERENCES cc_users (id) ON DELETE SET NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX session_reroutes_session_idx ON session_reroutes (session_id, created_at);

ALTER TABLE pairing_failures ADD COLUMN session_id uuid REFERENCES chat_sessions (id);
