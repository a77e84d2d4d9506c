"""Buffered heartbeats: no I/O on the request, the flush thread writes them and learns deactivations."""

from __future__ import annotations

import logging
import time

from lib.errors import Forbidden
from lib.presence.beats import Heartbeats
from lib.presence.keys import DEACTIVATED, heartbeat_key
from lib.presence.state import set_online
from lib.services import Services
from lib.valkey import make_client
from tests.helpers import free_port


def _eventually(check, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_the_flush_thread_writes_beats_and_learns_deactivations(services: Services, mitra_login) -> None:
    mitra, _ = mitra_login()
    mitra_id = str(mitra["id"])
    beats = Heartbeats(services.db, services.valkey, flush_seconds=0.2)
    try:
        beats.record(mitra_id)  # the first beat of a process flushes once and starts the thread
        before = time.time()
        beats.record(mitra_id)
        # The thread writes it within an interval or two. (That the request itself writes nothing is
        # test_close_writes_what_is_pending's to show: here the thread may flush at any moment.)
        assert _eventually(lambda: float(services.valkey.get(heartbeat_key(mitra_id)) or 0) >= before)
        services.valkey.sadd(DEACTIVATED, mitra_id)

        def refused() -> bool:
            try:
                beats.record(mitra_id)
            except Forbidden as exc:
                return exc.code == "ACCOUNT_INACTIVE"
            return False

        assert _eventually(refused)
    finally:
        beats.close()
        services.valkey.srem(DEACTIVATED, mitra_id)


def test_close_writes_what_is_pending(services: Services, mitra_login) -> None:
    mitra, _ = mitra_login()
    mitra_id = str(mitra["id"])
    beats = Heartbeats(services.db, services.valkey, flush_seconds=60)
    beats.record(mitra_id)
    services.valkey.delete(heartbeat_key(mitra_id))
    beats.record(mitra_id)
    # Nothing written on the request (the thread's first flush is a minute away)...
    assert services.valkey.get(heartbeat_key(mitra_id)) is None
    beats.close()
    # ...and close() writes it.
    assert services.valkey.get(heartbeat_key(mitra_id)) is not None


def test_one_flush_writes_every_pending_beat(services: Services) -> None:
    n = 500
    beats = Heartbeats(services.db, services.valkey, flush_seconds=60)
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(n)]
    beats.record(ids[0])
    for mitra_id in ids:
        beats.record(mitra_id)
    assert beats.flush() == n
    assert all(v is not None for v in services.valkey.mget([heartbeat_key(m) for m in ids]))
    beats.close()


def test_the_postgres_fallback_writes_the_good_beats_beside_a_malformed_one(
    services: Services, make_mitra, caplog
) -> None:
    """Valkey is away, so the beats go to PostgreSQL in one statement: a malformed id must not fail it."""
    mitra = str(make_mitra()["id"])
    set_online(services.db, services.valkey, mitra, True)
    services.db.execute("UPDATE mitra_online_status SET last_heartbeat_at = now() - interval '1 hour'")
    away = make_client(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    beats = Heartbeats(services.db, away, flush_seconds=60)
    try:
        beats.record(mitra)
        beats.record("not-a-uuid")
        with caplog.at_level(logging.WARNING, logger="lib.presence.beats"):
            assert beats.flush() == 2
        row = services.db.fetch_one(
            "SELECT now() - last_heartbeat_at < interval '1 minute' AS fresh FROM mitra_online_status "
            "WHERE mitra_id = %(m)s",
            {"m": mitra},
        )
        assert row == {"fresh": True}
        assert "heartbeats to PostgreSQL: 1 malformed heartbeat(s) skipped: 'not-a-uuid'" in caplog.text
    finally:
        beats.close()
        away.close()
