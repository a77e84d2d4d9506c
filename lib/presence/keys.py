"""The Valkey keys of the presence mirror (DOMAIN.md, "Mitra availability")."""

from __future__ import annotations

ONLINE = "mitras:online"  # set of online mitra ids
DEACTIVATED = "mitras:deactivated"  # set of deactivated mitra ids
SNAPSHOT = "availability:snapshot"  # {available, count}, shared for SNAPSHOT_SECONDS
SEEDED = "presence:seeded"  # gone after a Valkey restart or flush: the mirror must be rebuilt
SNAPSHOT_SECONDS = 10
HEARTBEAT_TTL_SECONDS = 86400


def heartbeat_key(mitra_id: str) -> str:
    """Unix time of the mitra's last heartbeat."""
    return f"mitra:heartbeat:{mitra_id}"


def capacity_key(mitra_id: str) -> str:
    """The mitra's live sessions, recomputed from PostgreSQL after every transition."""
    return f"mitra:capacity:{mitra_id}"
