"""Presence, the domain service handlers and jobs call (`ctx.services.presence`): the parts a
mitra's availability needs, held once (runtime/container.py builds it), and one thin method per
operation delegating to the lib/presence functions, which stay the rules (and what lib/tests call
directly)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from lib.auth.revocation import RevocationList
from lib.config.app import AppConfig
from lib.db import Database
from lib.presence import availability, deactivation, mirror, state
from lib.presence.availability import AvailabilityCache


@dataclass(frozen=True, kw_only=True, eq=False)
class Presence:
    db: Database
    valkey: redis.Redis
    config: AppConfig
    revocations: RevocationList
    availability_cache: AvailabilityCache
    heartbeat_cadence_seconds: int  # MITRA_HEARTBEAT_CADENCE_SECONDS, told to the app
    heal_seconds: float  # PRESENCE_HEAL_SECONDS: a full rebuild of the mirror at most this often

    def set_online(self, mitra_id: str, online: bool) -> bool:
        """The mitra's online switch: PostgreSQL (state and online log) first, then the Valkey
        mirror; whether it changed anything."""
        return state.set_online(self.db, self.valkey, mitra_id, online)

    def status(self, mitra_id: str) -> dict[str, Any]:
        """The mitra's online status, as its app shows it."""
        return state.status_doc(self.db, self.config, self.heartbeat_cadence_seconds, mitra_id)

    def availability(self) -> dict[str, Any]:
        """Whether a Bestie is available now ({available, count})."""
        return availability.availability(self.db, self.valkey, self.config, self.availability_cache)

    def set_active(self, mitra_id: str, active: bool) -> dict[str, Any] | None:
        """Activate or deactivate a mitra (deactivation ends its sessions and signs it out); None
        for an unknown mitra."""
        return deactivation.set_active(self.db, self.valkey, self.revocations, mitra_id, active)

    def sweep_stale(self) -> list[str]:
        """Set offline the mitras whose heartbeats stopped."""
        return state.sweep_stale(self.db, self.valkey, self.config)

    def flush_heartbeats(self) -> int:
        """Copy mitras' last heartbeats from Valkey to PostgreSQL in one batch."""
        return mirror.flush_heartbeats(self.db, self.valkey)

    def heal(self) -> bool:
        """Repair the Valkey mirror from PostgreSQL (a full rebuild at most every heal_seconds)."""
        return mirror.heal(self.db, self.valkey, self.heal_seconds)
