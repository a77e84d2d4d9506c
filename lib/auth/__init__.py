"""Identity: access tokens, permissions (refresh sessions, OTP and logins build on these)."""
