"""Typed getters for deploy-fixed settings read from the environment, once per process."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

log = logging.getLogger(__name__)

APP_ENVS = ("development", "test", "staging", "production")
# Values people paste from examples; a secret that contains one of them is not a secret.
_PLACEHOLDER_MARKERS = (
    "changeme",
    "change-me",
    "change_me",
    "replace",
    "placeholder",
    "example",
    "your-secret",
    "your_secret",
    "secretsecret",
    "xxxxxxxx",
    "00000000",
)


OTP_PROVIDERS = ("stub", "twilio_verify")
TWILIO_VERIFY_CHANNELS = ("sms", "whatsapp")
_TWILIO_ACCOUNT = re.compile(r"^(AC|SK)[0-9a-fA-F]{32}$")
_TWILIO_SERVICE = re.compile(r"^VA[0-9a-fA-F]{32}$")

WEB_SERVERS = ("granian", "gunicorn")  # for the REST listeners; the realtime gateway runs on gunicorn


class ConfigError(RuntimeError):
    """A setting is missing or unusable; the process must not start."""


def env_str(name: str, default: str = "", environ: Mapping[str, str] | None = None) -> str:
    value = (os.environ if environ is None else environ).get(name, "")
    return value.strip() or default


def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """An integer setting; blank, garbage or out-of-range falls back to the default, with a warning."""
    raw = env_str(name, "", environ)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        log.warning("[config] %s=%r is not an integer; using the default %s", name, raw, default)
        return default
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        log.warning("[config] %s=%s is outside %s..%s; using the default %s", name, value, minimum, maximum, default)
        return default
    return value


def env_float(name: str, default: float, environ: Mapping[str, str] | None = None) -> float:
    raw = env_str(name, "", environ)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        log.warning("[config] %s=%r is not a number; using the default %s", name, raw, default)
        return default
    if value <= 0:
        log.warning("[config] %s=%s must be positive; using the default %s", name, value, default)
        return default
    return value


def env_bool(name: str, default: bool, environ: Mapping[str, str] | None = None) -> bool:
    raw = env_str(name, "", environ).lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    log.warning("[config] %s=%r is not a boolean; using the default %s", name, raw, default)
    return default


def env_list(name: str, environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    return tuple(part.strip() for part in env_str(name, "", environ).split(",") if part.strip())


def check_jwt_secret(secret: str) -> None:
    """Refuse a missing, short or placeholder signing secret (SECURITY.md item 3)."""
    if not secret:
        raise ConfigError(
            "AUTH_JWT_SECRET is not set; generate one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    if len(secret.encode()) < 32:
        raise ConfigError("AUTH_JWT_SECRET must be at least 32 bytes")
    lowered = secret.lower()
    if len(set(secret)) < 8 or any(marker in lowered for marker in _PLACEHOLDER_MARKERS):
        raise ConfigError("AUTH_JWT_SECRET looks like a placeholder; use a random value")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Deploy-fixed settings. Operator-tunable values live in the app_config table instead."""

    app_env: str = "production"  # an unset APP_ENV is a real deployment: no dev hooks, no stubs by accident
    database_url: str = ""
    redis_url: str = ""
    auth_jwt_secret: str = field(default="", repr=False)
    access_token_ttl_seconds: int = 3600
    refresh_token_ttl_days: int = 30
    public_port: int = 3000
    internal_host: str = "127.0.0.1"
    internal_port: int = 3001
    realtime_port: int = 3002
    metrics_port: int = 0  # 0: no private metrics port (the internal listener still answers /internal/metrics)
    realtime_auth_timeout_seconds: float = 10.0
    cc_origin: tuple[str, ...] = ()
    server_tz: str = "UTC"
    log_format: str = "json"
    log_level: str = "INFO"
    web_server: str = "granian"
    web_concurrency: int = 2
    web_threads: int = 8
    graceful_timeout: int = 30
    db_pool_min: int = 1
    db_pool_max: int = 10
    db_pool_timeout: float = 3.0
    valkey_timeout: float = 0.3
    mitra_heartbeat_cadence_seconds: int = 30
    mitra_auto_offline_sweep_seconds: int = 30
    payment_sweep_seconds: int = 60
    heartbeat_flush_seconds: int = 10
    presence_heal_seconds: int = 60
    admin_email: str = ""
    admin_password: str = field(default="", repr=False)
    trusted_proxy_hops: int = 0
    otp_provider: str = "stub"  # OTP_PROVIDERS
    otp_allow_stub: bool = False
    twilio_account_sid: str = ""  # or an API key SID (SK...) with its secret as the token
    twilio_auth_token: str = field(default="", repr=False)
    twilio_verify_service_sid: str = ""
    twilio_base_url: str = "https://verify.twilio.com"
    twilio_verify_channel: str = "sms"
    twilio_timeout_seconds: float = 5.0
    google_client_ids: tuple[str, ...] = ()
    apple_client_ids: tuple[str, ...] = ()
    xendit_enabled: bool = False
    xendit_secret_key: str = field(default="", repr=False)
    xendit_webhook_token: str = field(default="", repr=False)
    xendit_base_url: str = "https://api.xendit.co"
    xendit_timeout_seconds: float = 10.0
    chat_encryption_keys: str = field(default="", repr=False)
    chat_retention_days: int = 90
    xendit_success_redirect_url: str = ""
    xendit_failure_redirect_url: str = ""
    xendit_webhook_fallback_enabled: bool = False
    xendit_webhook_fallback_dir: str = "./logs"
    xendit_webhook_fallback_name: str = "xendit-webhook-fallback"
    firebase_service_account_path: str = ""
    fcm_base_url: str = ""  # tests point firebase-admin at a fake FCM; empty = Google's
    google_jwks_url: str = "https://www.googleapis.com/oauth2/v3/certs"
    apple_jwks_url: str = "https://appleid.apple.com/auth/keys"
    # Fair share per user (docs/limits.md): what one user may cost, so no user can hurt another.
    ws_sockets_per_user: int = 8
    ws_frames_per_second: int = 20
    ws_opens_per_minute: int = 30  # sockets a user may open on one gateway process in a minute
    messages_per_minute: int = 60
    device_tokens_per_user: int = 10
    payment_requests_per_hour: int = 10
    push_queue_per_recipient: int = 20
    password_change_attempts: int = 5  # per 15 minutes per user
    webhook_refused_per_minute: int = 30  # refused (unauthenticated) callbacks per IP
    # Retention of operational rows (functions/jobs/retention.py), in days.
    webhook_log_retention_days: int = 90
    otp_request_retention_days: int = 30
    security_event_retention_days: int = 365
    refresh_token_retention_days: int = 7  # after a refresh token expired or was revoked
    retention_sweep_seconds: int = 3600

    @property
    def is_dev_or_test(self) -> bool:
        return self.app_env in ("development", "test")

    def check_otp_provider(self) -> None:
        """The stub logs codes; it must never serve production by accident (SECURITY.md item 11).
        Twilio Verify needs its credentials, a well-formed service SID and a channel it offers."""
        if self.otp_provider not in OTP_PROVIDERS:
            raise ConfigError(f"OTP_PROVIDER must be one of {', '.join(OTP_PROVIDERS)}, not {self.otp_provider!r}")
        if self.otp_provider == "stub":
            if self.app_env == "production" and not self.otp_allow_stub:
                raise ConfigError(
                    "APP_ENV=production with the stub OTP provider (it logs codes): "
                    "set OTP_PROVIDER=twilio_verify, or OTP_ALLOW_STUB=true only if that is really intended"
                )
            return
        missing = [
            name
            for name, value in (
                ("TWILIO_ACCOUNT_SID", self.twilio_account_sid),
                ("TWILIO_AUTH_TOKEN", self.twilio_auth_token),
                ("TWILIO_VERIFY_SERVICE_SID", self.twilio_verify_service_sid),
            )
            if not value
        ]
        if missing:
            raise ConfigError(f"OTP_PROVIDER=twilio_verify needs {', '.join(missing)}")
        if not _TWILIO_ACCOUNT.match(self.twilio_account_sid):
            raise ConfigError("TWILIO_ACCOUNT_SID must be an account SID (AC + 32 hex) or an API key SID (SK + 32 hex)")
        if not _TWILIO_SERVICE.match(self.twilio_verify_service_sid):
            raise ConfigError("TWILIO_VERIFY_SERVICE_SID must be a Verify service SID (VA + 32 hex)")
        if self.twilio_verify_channel not in TWILIO_VERIFY_CHANNELS:
            raise ConfigError(f"TWILIO_VERIFY_CHANNEL must be one of {', '.join(TWILIO_VERIFY_CHANNELS)}")
        if not self.is_dev_or_test and not self.twilio_base_url.startswith("https://"):
            raise ConfigError("TWILIO_BASE_URL must be https:// outside development and test (it carries the token)")

    def check_payments(self) -> None:
        if self.xendit_enabled and not (self.xendit_secret_key and self.xendit_webhook_token):
            raise ConfigError("XENDIT_ENABLED=true needs XENDIT_SECRET_KEY and XENDIT_WEBHOOK_TOKEN")

    def check_pushes(self) -> None:
        """Pushes are optional, but a configured service account must be there."""
        path = self.firebase_service_account_path
        if path and not os.path.isfile(path):
            raise ConfigError(f"FIREBASE_SERVICE_ACCOUNT_PATH={path!r} is not a readable file")

    def require_database_url(self) -> str:
        if not self.database_url:
            raise ConfigError("DATABASE_URL is not set (make dev starts an embedded PostgreSQL for you)")
        return self.database_url


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read every deploy-fixed setting; format errors fall back to defaults with a warning."""
    e = os.environ if environ is None else environ
    app_env = env_str("APP_ENV", "production", e)
    if app_env not in APP_ENVS:
        raise ConfigError(f"APP_ENV must be one of {', '.join(APP_ENVS)}, not {app_env!r}")
    log_format = env_str("LOG_FORMAT", "json", e).lower()
    if log_format not in ("json", "text"):
        log.warning("[config] LOG_FORMAT=%r is not json|text; using json", log_format)
        log_format = "json"
    web_server = env_str("WEB_SERVER", "granian", e).lower()
    if web_server not in WEB_SERVERS:
        raise ConfigError(f"WEB_SERVER must be one of {', '.join(WEB_SERVERS)}, not {web_server!r}")
    return Settings(
        app_env=app_env,
        database_url=env_str("DATABASE_URL", "", e),
        redis_url=env_str("REDIS_URL", "", e),
        auth_jwt_secret=env_str("AUTH_JWT_SECRET", "", e),
        access_token_ttl_seconds=env_int("ACCESS_TOKEN_TTL_SECONDS", 3600, minimum=60, maximum=86400, environ=e),
        refresh_token_ttl_days=env_int("REFRESH_TOKEN_TTL_DAYS", 30, minimum=1, maximum=365, environ=e),
        public_port=env_int("PUBLIC_PORT", 3000, minimum=1, maximum=65535, environ=e),
        internal_host=env_str("INTERNAL_HOST", "127.0.0.1", e),
        internal_port=env_int("INTERNAL_PORT", 3001, minimum=1, maximum=65535, environ=e),
        realtime_port=env_int("REALTIME_PORT", 3002, minimum=1, maximum=65535, environ=e),
        metrics_port=env_int("METRICS_PORT", 0, minimum=0, maximum=65535, environ=e),
        realtime_auth_timeout_seconds=env_float("REALTIME_AUTH_TIMEOUT_SECONDS", 10.0, e),
        cc_origin=env_list("CC_ORIGIN", e),
        server_tz=env_str("SERVER_TZ", "UTC", e),
        log_format=log_format,
        log_level=env_str("LOG_LEVEL", "INFO", e).upper(),
        web_server=web_server,
        web_concurrency=env_int("WEB_CONCURRENCY", 2, minimum=1, maximum=64, environ=e),
        web_threads=env_int("WEB_THREADS", 8, minimum=1, maximum=256, environ=e),
        graceful_timeout=env_int("GRACEFUL_TIMEOUT", 30, minimum=1, maximum=600, environ=e),
        db_pool_min=env_int("DB_POOL_MIN", 1, minimum=0, maximum=100, environ=e),
        db_pool_max=env_int("DB_POOL_MAX", 10, minimum=1, maximum=200, environ=e),
        db_pool_timeout=env_float("DB_POOL_TIMEOUT_SECONDS", 3.0, e),
        valkey_timeout=env_float("VALKEY_TIMEOUT_SECONDS", 0.3, e),
        mitra_heartbeat_cadence_seconds=env_int(
            "MITRA_HEARTBEAT_CADENCE_SECONDS", 30, minimum=1, maximum=3600, environ=e
        ),
        mitra_auto_offline_sweep_seconds=env_int(
            "MITRA_AUTO_OFFLINE_SWEEP_SECONDS", 30, minimum=1, maximum=3600, environ=e
        ),
        payment_sweep_seconds=env_int("PAYMENT_SWEEP_SECONDS", 60, minimum=1, maximum=3600, environ=e),
        heartbeat_flush_seconds=env_int("HEARTBEAT_FLUSH_SECONDS", 10, minimum=1, maximum=600, environ=e),
        presence_heal_seconds=env_int("PRESENCE_HEAL_SECONDS", 60, minimum=5, maximum=3600, environ=e),
        admin_email=env_str("ADMIN_EMAIL", "", e),
        admin_password=env_str("ADMIN_PASSWORD", "", e),
        trusted_proxy_hops=env_int("TRUSTED_PROXY_HOPS", 0, minimum=0, maximum=5, environ=e),
        otp_provider=env_str("OTP_PROVIDER", "stub", e).lower(),
        otp_allow_stub=env_bool("OTP_ALLOW_STUB", False, e),
        twilio_account_sid=env_str("TWILIO_ACCOUNT_SID", "", e),
        twilio_auth_token=env_str("TWILIO_AUTH_TOKEN", "", e),
        twilio_verify_service_sid=env_str("TWILIO_VERIFY_SERVICE_SID", "", e),
        twilio_base_url=env_str("TWILIO_BASE_URL", "https://verify.twilio.com", e).rstrip("/"),
        twilio_verify_channel=env_str("TWILIO_VERIFY_CHANNEL", "sms", e).lower(),
        twilio_timeout_seconds=env_float("TWILIO_TIMEOUT_SECONDS", 5.0, e),
        google_client_ids=env_list("GOOGLE_CLIENT_IDS", e),
        apple_client_ids=env_list("APPLE_CLIENT_IDS", e),
        xendit_enabled=env_bool("XENDIT_ENABLED", False, e),
        xendit_secret_key=env_str("XENDIT_SECRET_KEY", "", e),
        xendit_webhook_token=env_str("XENDIT_WEBHOOK_TOKEN", "", e),
        xendit_base_url=env_str("XENDIT_BASE_URL", "https://api.xendit.co", e).rstrip("/"),
        xendit_timeout_seconds=env_float("XENDIT_TIMEOUT_SECONDS", 10.0, e),
        chat_encryption_keys=env_str("CHAT_ENCRYPTION_KEYS", "", e),
        chat_retention_days=env_int("CHAT_RETENTION_DAYS", 90, minimum=0, maximum=36500, environ=e),
        xendit_success_redirect_url=env_str("XENDIT_SUCCESS_REDIRECT_URL", "", e),
        xendit_failure_redirect_url=env_str("XENDIT_FAILURE_REDIRECT_URL", "", e),
        xendit_webhook_fallback_enabled=env_bool("XENDIT_WEBHOOK_FALLBACK_ENABLED", False, e),
        xendit_webhook_fallback_dir=env_str("XENDIT_WEBHOOK_FALLBACK_DIR", "./logs", e),
        xendit_webhook_fallback_name=env_str("XENDIT_WEBHOOK_FALLBACK_NAME", "xendit-webhook-fallback", e),
        firebase_service_account_path=env_str("FIREBASE_SERVICE_ACCOUNT_PATH", "", e),
        fcm_base_url=env_str("FCM_BASE_URL", "", e),
        google_jwks_url=env_str("GOOGLE_JWKS_URL", "https://www.googleapis.com/oauth2/v3/certs", e),
        apple_jwks_url=env_str("APPLE_JWKS_URL", "https://appleid.apple.com/auth/keys", e),
        ws_sockets_per_user=env_int("WS_SOCKETS_PER_USER", 8, minimum=1, maximum=1000, environ=e),
        ws_frames_per_second=env_int("WS_FRAMES_PER_SECOND", 20, minimum=1, maximum=10000, environ=e),
        ws_opens_per_minute=env_int("WS_OPENS_PER_MINUTE", 30, minimum=1, maximum=100000, environ=e),
        messages_per_minute=env_int("MESSAGES_PER_MINUTE", 60, minimum=1, maximum=100000, environ=e),
        device_tokens_per_user=env_int("DEVICE_TOKENS_PER_USER", 10, minimum=1, maximum=1000, environ=e),
        payment_requests_per_hour=env_int("PAYMENT_REQUESTS_PER_HOUR", 10, minimum=1, maximum=10000, environ=e),
        push_queue_per_recipient=env_int("PUSH_QUEUE_PER_RECIPIENT", 20, minimum=1, maximum=10000, environ=e),
        password_change_attempts=env_int("PASSWORD_CHANGE_ATTEMPTS", 5, minimum=1, maximum=1000, environ=e),
        webhook_refused_per_minute=env_int("WEBHOOK_REFUSED_PER_MINUTE", 30, minimum=1, maximum=10000, environ=e),
        webhook_log_retention_days=env_int("WEBHOOK_LOG_RETENTION_DAYS", 90, minimum=1, maximum=36500, environ=e),
        otp_request_retention_days=env_int("OTP_REQUEST_RETENTION_DAYS", 30, minimum=1, maximum=36500, environ=e),
        security_event_retention_days=env_int(
            "SECURITY_EVENT_RETENTION_DAYS", 365, minimum=1, maximum=36500, environ=e
        ),
        refresh_token_retention_days=env_int("REFRESH_TOKEN_RETENTION_DAYS", 7, minimum=0, maximum=36500, environ=e),
        retention_sweep_seconds=env_int("RETENTION_SWEEP_SECONDS", 3600, minimum=60, maximum=86400, environ=e),
    )


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
