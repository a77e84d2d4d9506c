"""Operator-tunable settings from the app_config table: typed, validated on read, cached briefly,
invalidated across processes over the bus on every write."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from lib.bus import Bus
from lib.config.env import Settings
from lib.db import Database
from lib.errors import ValidationFailed

log = logging.getLogger(__name__)

CHANNEL = "config:changed"
CACHE_SECONDS = 3.0  # the ceiling on staleness when the bus is down


@dataclass(frozen=True)
class Key:
    name: str
    type: str  # int | bool | enum | object
    default: Any
    min: int | None = None
    max: int | None = None
    choices: tuple[str, ...] = ()

    def bounds(self, env: Settings | None) -> tuple[int | None, int | None]:
        """(min, max); some minimums come from deploy-fixed env values."""
        minimum = self.min
        if self.name == "mitra_stale_after_seconds" and env is not None:
            minimum = max(minimum or 0, env.mitra_heartbeat_cadence_seconds)
        return minimum, self.max

    def problem(self, value: Any, env: Settings | None = None) -> str | None:
        """Why `value` is not acceptable for this key, or None."""
        if self.type == "int":
            low, _ = self.bounds(env)
            if not isinstance(value, int) or isinstance(value, bool):
                return "Must be an integer."
            if low is not None and value < low:
                if low != self.min:
                    return f"Must be at least {low} (the heartbeat cadence, MITRA_HEARTBEAT_CADENCE_SECONDS)."
                return f"Must be at least {low}."
            if self.max is not None and value > self.max:
                return f"Must be at most {self.max}."
        elif self.type == "bool":
            if not isinstance(value, bool):
                return "Must be true or false."
        elif self.type == "enum":
            if value not in self.choices:
                return f"Must be one of: {', '.join(self.choices)}."
        elif self.type == "object" and not (
            isinstance(value, dict)
            and all(isinstance(k, str) and isinstance(v, str) and len(v) <= 200 for k, v in value.items())
        ):
            return "Must be an object of channel -> handle strings."
        return None


KEYS: dict[str, Key] = {
    k.name: k
    for k in (
        Key("max_customers_per_mitra", "int", 3, 1, 20),
        Key("mitra_stale_after_seconds", "int", 45, 1, 3600),
        Key("mitra_disconnect_grace_seconds", "int", 15, 0, 600),
        Key("require_ping", "bool", True),
        Key("pairing_blast_timeout_seconds", "int", 60, 10, 600),
        Key("returning_chat_confirmation_timeout_seconds", "int", 20, 5, 300),
        Key("extension_timeout_seconds", "int", 10, 5, 300),
        Key(
            "extension_default_action_on_timeout",
            "enum",
            "auto_approve",
            choices=("auto_approve", "auto_reject"),
        ),
        Key("payment_request_timeout_minutes", "int", 20, 5, 1440),
        Key("extension_refusal_resumes", "bool", False),
        Key("early_end_mitra_enabled", "bool", False),
        Key("sensitive_flip_confirmation_enabled", "bool", True),
        Key("sensitive_flag_one_way_latch", "bool", False),
        Key("support_handles_json", "object", {}),
        Key("otp_ttl_seconds", "int", 300, 30, 600),
        Key("otp_max_attempts", "int", 5, 3, 10),
        Key("otp_resend_cooldown_seconds", "int", 60, 10, 300),
        Key("otp_max_per_phone_per_hour", "int", 5, 1, 100),
        Key("otp_max_per_ip_per_hour", "int", 30, 1, 10000),
        Key("cc_lockout_threshold", "int", 5, 1, 100),
        Key("cc_lockout_minutes", "int", 15, 1, 1440),
        Key("otp_bypass_enabled", "bool", False),
        Key("anonymous_signups_per_ip_per_hour", "int", 30, 1, 10000),
        Key("cc_login_attempts_per_ip_per_hour", "int", 50, 1, 10000),
    )
}


class AppConfig:
    """Per-process view of app_config. Reads are served from memory; a bad row yields the default."""

    def __init__(self, db: Database, bus: Bus | None = None) -> None:
        self._db = db
        self._bus = bus
        self._values: dict[str, Any] = {}
        self._rows: dict[str, dict[str, Any]] = {}
        self._loaded_at = 0.0
        self._lock = threading.Lock()
        self._listening = False

    def invalidate(self) -> None:
        self._loaded_at = 0.0

    def set(self, changes: dict[str, Any], changed_by: str | None, env: Settings | None = None) -> None:
        """An operator's change (set_values), read back by this process's next read."""
        set_values(self._db, self._bus, changes, changed_by, env)
        self.invalidate()

    def _load(self) -> None:
        if self._bus is not None and not self._listening:  # first read: from now on, hear of changes
            self._listening = True
            self._bus.subscribe(CHANNEL, lambda _message: self.invalidate())
            self._bus.on_reconnect(self.invalidate)
        rows = self._db.fetch_all("SELECT key, value, updated_at, updated_by FROM app_config")
        values: dict[str, Any] = {name: key.default for name, key in KEYS.items()}
        by_key = {row["key"]: row for row in rows}
        for row in rows:
            key = KEYS.get(row["key"])
            if key is None:
                continue
            if key.problem(row["value"]) is None:
                values[key.name] = row["value"]
            else:
                log.warning(
                    "[config] app_config %s=%r is invalid; using the default %r",
                    key.name,
                    row["value"],
                    key.default,
                )
        self._values, self._rows = values, by_key
        self._loaded_at = time.monotonic()

    def _fresh(self) -> dict[str, Any]:
        if time.monotonic() - self._loaded_at > CACHE_SECONDS:
            with self._lock:
                if time.monotonic() - self._loaded_at > CACHE_SECONDS:
                    self._load()
        return self._values

    def get(self, name: str) -> Any:
        if name not in KEYS:
            raise KeyError(name)
        return self._fresh()[name]

    def int(self, name: str) -> int:
        value = self.get(name)
        assert isinstance(value, int)
        return value

    def bool(self, name: str) -> bool:
        return bool(self.get(name))

    def rows(self) -> dict[str, dict[str, Any]]:
        """Raw rows with updated_at / updated_by, for the control center."""
        self._fresh()
        return self._rows


def set_values(
    db: Database, bus: Bus | None, changes: dict[str, Any], changed_by: str | None, env: Settings | None = None
) -> None:
    """Validate every change, then write them all in one transaction with an audit row each, and
    tell every process to drop its cache. One bad key -> nothing is stored."""
    problems: dict[str, list[str]] = {}
    for name, value in changes.items():
        key = KEYS.get(name)
        problem = "Unknown setting." if key is None else key.problem(value, env)
        if problem:
            problems[name] = [problem]
    if problems:
        raise ValidationFailed(problems)
    with db.connection() as conn:
        for name, value in changes.items():
            old = conn.execute(
                "SELECT value FROM app_config WHERE key = %(config_key)s FOR UPDATE", {"config_key": name}
            ).fetchone()
            conn.execute(
                "INSERT INTO app_config (key, value, updated_at, updated_by) VALUES (%(config_key)s, %(value)s, now(), %(changed_by)s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now(), "
                "updated_by = EXCLUDED.updated_by",
                {"config_key": name, "value": Jsonb(value), "changed_by": changed_by},
            )
            conn.execute(
                "INSERT INTO app_config_audit (key, old_value, new_value, changed_by) "
                "VALUES (%(config_key)s, %(old_value)s, %(new_value)s, %(changed_by)s)",
                {
                    "config_key": name,
                    "old_value": Jsonb(old["value"]) if old else None,
                    "new_value": Jsonb(value),
                    "changed_by": changed_by,
                },
            )
    if bus is not None:
        bus.publish(CHANNEL, ",".join(changes))


def env_values(env: Settings) -> dict[str, int]:
    """The deploy-fixed values operators see next to the tunables they bound."""
    return {
        "heartbeat_cadence_seconds": env.mitra_heartbeat_cadence_seconds,
        "auto_offline_sweep_seconds": env.mitra_auto_offline_sweep_seconds,
        "payment_sweep_seconds": env.payment_sweep_seconds,
    }


def describe(config: AppConfig, env: Settings) -> dict[str, Any]:
    """GET /internal/config: every tunable with its type, bounds, last change, and the env values."""
    rows = config.rows()
    items = []
    for name, key in KEYS.items():
        row = rows.get(name, {})
        item: dict[str, Any] = {
            "key": name,
            "value": config.get(name),
            "type": key.type,
            "updated_at": row.get("updated_at"),
            "updated_by": row.get("updated_by"),
        }
        if key.type == "int":
            item["min"], item["max"] = key.bounds(env)
        if key.choices:
            item["choices"] = list(key.choices)
        items.append(item)
    return {"items": items, "env": env_values(env)}


def mitra_ping_doc(config: AppConfig, env: Settings) -> dict[str, Any]:
    """The original control center's shape for the heartbeat settings."""
    return {
        "require_ping": config.bool("require_ping"),
        "stale_after_seconds": config.int("mitra_stale_after_seconds"),
        "heartbeat_cadence_seconds": env.mitra_heartbeat_cadence_seconds,
    }
