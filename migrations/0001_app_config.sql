-- Operator-tunable settings (DOMAIN.md "app_config keys"), one JSON value per key.
CREATE TABLE app_config (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by uuid
);

INSERT INTO app_config (key, value) VALUES
    ('max_customers_per_mitra', '3'),
    ('mitra_stale_after_seconds', '45'),
    ('require_ping', 'true'),
    ('pairing_blast_timeout_seconds', '60'),
    ('returning_chat_confirmation_timeout_seconds', '20'),
    ('extension_timeout_seconds', '10'),
    ('extension_default_action_on_timeout', '"auto_approve"'),
    ('payment_request_timeout_minutes', '20'),
    ('early_end_mitra_enabled', 'false'),
    ('sensitive_flip_confirmation_enabled', 'true'),
    ('sensitive_flag_one_way_latch', 'false'),
    ('support_handles_json', '{}'),
    ('otp_ttl_seconds', '300'),
    ('otp_max_attempts', '5'),
    ('otp_resend_cooldown_seconds', '60'),
    ('otp_max_per_phone_per_hour', '5'),
    ('otp_max_per_ip_per_hour', '30'),
    ('cc_lockout_threshold', '5'),
    ('cc_lockout_minutes', '15'),
    ('otp_bypass_enabled', 'false'),
    ('anonymous_signups_per_ip_per_hour', '30'),
    ('cc_login_attempts_per_ip_per_hour', '50');
