-- Control-center users: e-mail + bcrypt password, role admin|operator, lockout counters.
CREATE TABLE cc_users (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email               text NOT NULL CHECK (email = lower(email) AND position('@' IN email) > 1),
    display_name        text NOT NULL,
    role                text NOT NULL CHECK (role IN ('admin', 'operator')),
    password_hash       text NOT NULL,
    is_active           boolean NOT NULL DEFAULT true,
    failed_login_count  integer NOT NULL DEFAULT 0,
    locked_until        timestamptz,
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX cc_users_email_key ON cc_users (email);

ALTER TABLE app_config
    ADD CONSTRAINT app_config_updated_by_fkey FOREIGN KEY (updated_by) REFERENCES cc_users (id)
    ON DELETE SET NULL;
