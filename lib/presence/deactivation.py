"""Taking a mitra out of service, and back: deactivation sets it offline, ends every session of
its account at once and drops it from every availability set."""

from __future__ import annotations

from typing import Any

import redis

from lib.auth.revocation import RevocationList
from lib.db import Database
from lib.presence.keys import DEACTIVATED, ONLINE, SNAPSHOT
from lib.presence.state import set_online
from lib.valkey import VALKEY_ERRORS, valkey_failed


def set_active(
    db: Database, valkey: redis.Redis, revocations: RevocationList, mitra_id: str, active: bool
) -> dict[str, Any] | None:
    """The mitra row after the change, or None for an unknown mitra."""
    row = db.fetch_one(
        "UPDATE mitras SET is_active = %(is_active)s, updated_at = now() WHERE id = %(mitra_id)s RETURNING *",
        {"is_active": active, "mitra_id": mitra_id},
    )
    if row is None:
        return None
    try:
        pipe = valkey.pipeline(transaction=False)
        if active:
            pipe.srem(DEACTIVATED, mitra_id)
        else:
            pipe.sadd(DEACTIVATED, mitra_id)
            pipe.srem(ONLINE, mitra_id)
        pipe.delete(SNAPSHOT)
        pipe.execute()
    except VALKEY_ERRORS:
        valkey_failed("deactivation")  # heartbeats then check PostgreSQL; the worker reseeds the sets
    if not active:
        set_online(db, valkey, mitra_id, False, reason="deactivation")
        revocations.revoke_user("mitra", mitra_id, reason="mitra_deactivated")
    return row
