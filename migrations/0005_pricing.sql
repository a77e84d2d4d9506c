-- Pricing: tiers per mode and the first-session discount, each with a history of every change.
-- updated_at is kept to the millisecond: it is the optimistic-lock token the control center echoes back
-- through JSON, which carries milliseconds.

CREATE TABLE pricing_tiers (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    mode       text NOT NULL CHECK (mode IN ('chat', 'call')),
    minutes    integer NOT NULL CHECK (minutes > 0),
    price      integer NOT NULL CHECK (price > 0),
    label      text NOT NULL,
    sort_order integer NOT NULL DEFAULT 0,
    is_active  boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', clock_timestamp()),
    UNIQUE (mode, minutes)
);

CREATE TABLE pricing_tier_history (
    id         bigserial PRIMARY KEY,
    tier_id    uuid NOT NULL REFERENCES pricing_tiers (id),
    kind       text NOT NULL CHECK (kind IN ('create', 'update', 'deactivate', 'reactivate')),
    before     jsonb,
    after      jsonb NOT NULL,
    changed_by uuid REFERENCES cc_users (id) ON DELETE SET NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pricing_tier_history_tier_idx ON pricing_tier_history (tier_id, changed_at DESC);

CREATE TABLE pricing_promotions (
    kind          text PRIMARY KEY CHECK (kind IN ('first_session')),
    enabled       boolean NOT NULL DEFAULT false,
    discount_type text NOT NULL CHECK (discount_type IN ('amount', 'percent')),
    value         integer NOT NULL CHECK (value >= 0),
    updated_at    timestamptz NOT NULL DEFAULT date_trunc('milliseconds', clock_timestamp()),
    CHECK (discount_type <> 'percent' OR value <= 100)
);

CREATE TABLE pricing_promotion_history (
    id         bigserial PRIMARY KEY,
    kind       text NOT NULL REFERENCES pricing_promotions (kind),
    before     jsonb,
    after      jsonb NOT NULL,
    changed_by uuid REFERENCES cc_users (id) ON DELETE SET NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);

-- Set by pairing when a session of the customer first becomes active: the discount's eligibility.
ALTER TABLE customers ADD COLUMN first_active_session_at timestamptz;

INSERT INTO pricing_tiers (mode, minutes, price, label, sort_order) VALUES
    ('chat', 15, 30000, '15 menit', 10),
    ('chat', 30, 60000, '30 menit', 20),
    ('chat', 45, 100000, '45 menit', 30),
    ('chat', 60, 150000, '60 menit', 40),
    ('chat', 1440, 250000, '24 jam', 50);

INSERT INTO pricing_promotions (kind, enabled, discount_type, value) VALUES ('first_session', false, 'amount', 0);
