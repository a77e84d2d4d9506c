-- The customer's rights (lib/privacy.py): an erased account keeps a pseudonymous row (payments and
-- sessions point at it) stamped here, and every export and erase is audited with who and why.
ALTER TABLE customers ADD COLUMN erased_at timestamptz;

CREATE TABLE privacy_audit (
    id          bigserial PRIMARY KEY,
    customer_id uuid NOT NULL REFERENCES customers (id),
    action      text NOT NULL CHECK (action IN ('export', 'erase')),
    actor_type  text NOT NULL CHECK (actor_type IN ('customer', 'cc_user')),
    actor_id    uuid NOT NULL,
    reason      text,
    details     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX privacy_audit_customer_idx ON privacy_audit (customer_id, created_at DESC);
