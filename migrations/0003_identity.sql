-- Identity: customers and their verified identities, mitras, refresh sessions, OTP, devices.

CREATE TABLE customers (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    display_name       text,
    is_anonymous       boolean NOT NULL DEFAULT true,
    phone              text UNIQUE,
    email              text,
    account_belongs_to uuid REFERENCES customers (id),
    usp_seen_at        timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    last_login_at      timestamptz
);

-- (provider, subject) is the identity key: phone number, Google or Apple `sub`.
CREATE TABLE customer_identities (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id uuid NOT NULL REFERENCES customers (id),
    provider    text NOT NULL CHECK (provider IN ('phone', 'google', 'apple')),
    subject     text NOT NULL,
    email       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, subject)
);
CREATE INDEX customer_identities_customer_idx ON customer_identities (customer_id);

CREATE TABLE mitras (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    phone        text NOT NULL UNIQUE,
    display_name text NOT NULL,
    is_active    boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- One row per login; the refresh-token chain hangs off it (auth_refresh_tokens).
CREATE TABLE auth_sessions (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_type          text NOT NULL CHECK (user_type IN ('customer', 'mitra', 'cc_user')),
    user_id            uuid NOT NULL,
    current_generation integer NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    last_rotated_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at         timestamptz,
    revoked_reason     text
);
CREATE INDEX auth_sessions_user_idx ON auth_sessions (user_type, user_id) WHERE revoked_at IS NULL;
CREATE INDEX auth_sessions_revoked_idx ON auth_sessions (revoked_at) WHERE revoked_at IS NOT NULL;

-- Every refresh token ever issued for a session (generation 0, 1, 2 ...), stored only as a bcrypt
-- hash and found by its selector, so a replayed ancestor is recognised as reuse of its session.
CREATE TABLE auth_refresh_tokens (
    selector   text PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES auth_sessions (id) ON DELETE CASCADE,
    generation integer NOT NULL,
    token_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (session_id, generation)
);

CREATE TABLE otp_requests (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    flow         text NOT NULL CHECK (flow IN ('customer', 'mitra')),
    phone        text NOT NULL,
    code_hash    text,            -- NULL for a bypass entry: the entry's own hash is checked
    bypass_id    uuid,
    attempts     integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL,
    client_ip    text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    consumed_at  timestamptz
);
CREATE INDEX otp_requests_phone_idx ON otp_requests (phone, created_at DESC);

CREATE TABLE otp_bypass_entries (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    phone      text NOT NULL UNIQUE,
    code_hash  text NOT NULL,
    note       text NOT NULL DEFAULT '',
    expires_at timestamptz NOT NULL,
    created_by uuid REFERENCES cc_users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE device_tokens (
    token      text PRIMARY KEY,
    user_type  text NOT NULL CHECK (user_type IN ('customer', 'mitra')),
    user_id    uuid NOT NULL,
    platform   text NOT NULL CHECK (platform IN ('android', 'ios')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX device_tokens_user_idx ON device_tokens (user_type, user_id);

-- Security events (refresh reuse, lockouts, ...) for the operators; never secrets.
CREATE TABLE security_events (
    id         bigserial PRIMARY KEY,
    kind       text NOT NULL,
    user_type  text,
    user_id    uuid,
    session_id uuid,
    client_ip  text,
    details    jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
