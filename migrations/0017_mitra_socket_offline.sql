-- A mitra goes offline when the app's last socket has been closed for mitra_disconnect_grace_seconds
-- (docs/chat.md, "Presence"); that change is logged with its own reason.

ALTER TABLE mitra_online_logs DROP CONSTRAINT mitra_online_logs_reason_check;
ALTER TABLE mitra_online_logs ADD CONSTRAINT mitra_online_logs_reason_check
    CHECK (reason IN ('manual', 'stale_sweep', 'deactivation', 'socket_closed'));
