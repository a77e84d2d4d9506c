-- Who changed which operator setting, when, from what to what.
CREATE TABLE app_config_audit (
    id         bigserial PRIMARY KEY,
    key        text NOT NULL,
    old_value  jsonb,
    new_value  jsonb NOT NULL,
    changed_by uuid REFERENCES cc_users (id) ON DELETE SET NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX app_config_audit_key_idx ON app_config_audit (key, changed_at DESC);
