-- Payments: requests (the webhook is the only confirmer), every callback logged verbatim, and the
-- paid requests that ended without a chat (for manual refunds).

CREATE TABLE payment_requests (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id        uuid NOT NULL REFERENCES customers (id),
    mode               text NOT NULL CHECK (mode IN ('chat', 'call')),
    tier_id            uuid NOT NULL REFERENCES pricing_tiers (id),
    minutes            integer NOT NULL,
    price              integer NOT NULL,
    discount           integer NOT NULL DEFAULT 0,
    amount             integer NOT NULL CHECK (amount >= 0),
    currency           text NOT NULL DEFAULT 'IDR',
    topic_sensitivity  text CHECK (topic_sensitivity IN ('normal', 'sensitive')),
    targeted_mitra_id  uuid REFERENCES mitras (id),
    status             text NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'confirmed', 'consumed', 'expired', 'abandoned', 'failed_pairing')),
    idempotency_key    text,
    request_hash       text,
    xendit_invoice_id  text,
    invoice_url        text,
    expires_at         timestamptz NOT NULL,
    confirmed_at       timestamptz,
    paid_amount        integer,
    payment_method     text,
    payment_channel    text,
    session_id         uuid REFERENCES chat_sessions (id),
    failure_cause      text,
    last_reconciled_at timestamptz,
    last_emitted_at    timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
-- The same Idempotency-Key from the same customer is one request, however many arrive at once.
CREATE UNIQUE INDEX payment_requests_idempotency_key ON payment_requests (customer_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- One open (pending or confirmed) request per customer: ALREADY_ACTIVE is settled here, not in Python.
CREATE UNIQUE INDEX payment_requests_one_open ON payment_requests (customer_id)
    WHERE status IN ('pending', 'confirmed');
CREATE INDEX payment_requests_pending_idx ON payment_requests (expires_at) WHERE status = 'pending';
CREATE INDEX payment_requests_customer_idx ON payment_requests (customer_id, created_at DESC);
CREATE INDEX payment_requests_created_idx ON payment_requests (created_at DESC, id DESC);

CREATE TABLE webhook_logs (
    id                 bigserial PRIMARY KEY,
    provider           text NOT NULL DEFAULT 'xendit',
    received_at        timestamptz NOT NULL DEFAULT now(),
    external_id        text,
    invoice_id         text,
    status             text,
    amount             numeric,
    paid_amount        numeric,
    currency           text,
    client_ip          text,
    raw_body           bytea NOT NULL,   -- verbatim, byte for byte (text could not hold a NUL)
    outcome            text,
    payment_request_id uuid,
    processed_at       timestamptz
);
CREATE INDEX webhook_logs_external_idx ON webhook_logs (external_id, received_at DESC);
CREATE INDEX webhook_logs_received_idx ON webhook_logs (received_at DESC, id DESC);

CREATE TABLE pairing_failures (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    payment_request_id uuid NOT NULL UNIQUE REFERENCES payment_requests (id),
    customer_id        uuid NOT NULL REFERENCES customers (id),
    cause              text NOT NULL,
    review_status      text NOT NULL DEFAULT 'open' CHECK (review_status IN ('open', 'reviewed', 'refunded')),
    notes              text NOT NULL DEFAULT '',
    reviewed_by        uuid REFERENCES cc_users (id) ON DELETE SET NULL,
    reviewed_at        timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pairing_failures_created_idx ON pairing_failures (created_at DESC, id DESC);
