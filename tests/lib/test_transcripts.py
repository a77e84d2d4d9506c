"""Transcripts sealed at rest: ciphertext in the table, tamper and wrong-session refused, the key
ring, rotation under concurrent writes, retention."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest

from lib.chat.messages import send
from lib.config.env import ConfigError, Settings
from lib.principal import Principal
from lib.transcripts import KeyRing, Transcripts, TranscriptUnreadable, purge_expired, rotate_batch, rows_by_master_key
from runtime.container import build_services
from tests.chatflow import Chat
from tests.conftest import bearer


def _send(chat: Chat, token: str, session_id: str, content: str):
    return chat.app.simulate_post(
        f"/api/shared/chat/{session_id}/messages",
        headers=bearer(token),
        json={"client_message_id": str(uuid.uuid4()), "content": content},
    )


def _rows(chat: Chat, session_id: str) -> list[dict[str, Any]]:
    return chat.pay.db.fetch_all("SELECT * FROM chat_messages WHERE session_id = %(s)s ORDER BY seq", {"s": session_id})


def test_the_table_holds_ciphertext_and_the_api_the_text(chat: Chat) -> None:
    customer, _, mitra_token, session_id = chat.paired()
    secret = "aku takut bilang ke orang tuaku"
    assert _send(chat, customer["access_token"], session_id, secret).status_code == 201
    (row,) = _rows(chat, session_id)
    assert row["content"] is None
    assert row["key_id"] is not None
    assert len(bytes(row["nonce"])) == 12
    assert secret.encode() not in bytes(row["ciphertext"])
    raw = chat.pay.db.fetch_one("SELECT row_to_json(m)::text AS t FROM chat_messages m WHERE id = %(id)s", row)
    assert raw is not None
    assert "takut" not in raw["t"]
    listed = chat.app.simulate_get(f"/api/shared/chat/{session_id}/messages", headers=bearer(mitra_token))
    assert [m["content"] for m in listed.json["data"]["items"]] == [secret]


def test_tampering_or_moving_a_ciphertext_is_refused(chat: Chat) -> None:
    customer, _, _, session_id = chat.paired()
    other_customer, _, _, other_session = chat.paired()
    _send(chat, customer["access_token"], session_id, "rahasia")
    _send(chat, other_customer["access_token"], other_session, "lain")
    (row,) = _rows(chat, session_id)
    t = chat.pay.transcripts
    assert t.open_row(row) == "rahasia"
    flipped = bytearray(row["ciphertext"])
    flipped[0] ^= 1
    with pytest.raises(TranscriptUnreadable):
        t.open_row({**row, "ciphertext": bytes(flipped)})
    with pytest.raises(TranscriptUnreadable):
        t.open_row({**row, "session_id": other_session})  # the session is the associated data
    # Moved in the table itself: the other session's row now carries this ciphertext.
    (target,) = _rows(chat, other_session)
    chat.pay.db.execute(
        "UPDATE chat_messages SET key_id = %(k)s, nonce = %(n)s, ciphertext = %(c)s WHERE id = %(id)s",
        {"k": row["key_id"], "n": row["nonce"], "c": row["ciphertext"], "id": target["id"]},
    )
    with pytest.raises(TranscriptUnreadable):
        t.open_row(_rows(chat, other_session)[0])


def test_the_key_ring_is_parsed_strictly() -> None:
    ring = KeyRing.parse(f"{KeyRing.generate('new')}, {KeyRing.generate('old')}")
    assert ring.active == "new"
    assert set(ring.keys) == {"new", "old"}
    assert "keys" not in repr(ring)  # the secrets stay out of reprs and tracebacks
    for bad in (
        "",
        "nokey",
        "a b:AAAA",
        "k1:not-base64!",
        "k1:" + "QUFB" * 4,
        f"{KeyRing.generate('x')},{KeyRing.generate('x')}",
    ):
        with pytest.raises(ConfigError, match="CHAT_ENCRYPTION_KEYS"):
            KeyRing.parse(bad)


def test_staging_and_production_refuse_to_start_without_a_ring(settings: Settings) -> None:
    for env in ("staging", "production"):
        with pytest.raises(ConfigError, match="CHAT_ENCRYPTION_KEYS is not set"):
            build_services(replace(settings, app_env=env, otp_allow_stub=True))


def test_a_new_master_key_gets_one_data_key_whoever_races(settings: Settings) -> None:
    ring = KeyRing.parse(KeyRing.generate(f"race-{uuid.uuid4().hex[:8]}"))
    services = [build_services(settings, application_name="transcripts-race") for _ in range(8)]
    try:
        barrier = threading.Barrier(8)

        def first_use(svc) -> str:
            barrier.wait()
            return Transcripts(svc.db, ring).active_key_id()

        with ThreadPoolExecutor(8) as pool:
            ids = set(pool.map(first_use, services))
        assert len(ids) == 1
        n = services[0].db.fetch_one(
            "SELECT count(*) AS n FROM chat_data_keys WHERE master_key_id = %(m)s", {"m": ring.active}
        )
        assert n == {"n": 1}
        # A ring without that master key cannot open what it sealed.
        sealed = Transcripts(services[0].db, ring).seal(str(uuid.uuid4()), "x")
        stranger = Transcripts(services[0].db, KeyRing.parse(KeyRing.generate("stranger")))
        with pytest.raises(TranscriptUnreadable, match="not in CHAT_ENCRYPTION_KEYS"):
            stranger.open(uuid.uuid4(), sealed.key_id, sealed.nonce, sealed.ciphertext)
    finally:
        for svc in services:
            svc.close()


def test_rotation_under_concurrent_writes_keeps_every_row_readable(chat: Chat) -> None:
    customer, _, _, session_id = chat.paired()
    db, events = chat.pay.db, chat.pay.chat_events
    who = Principal(user_type="customer", user_id=str(customer["user"]["id"]), session_id="s")
    old_entry, new_entry = (
        KeyRing.generate(f"old-{uuid.uuid4().hex[:6]}"),
        KeyRing.generate(f"new-{uuid.uuid4().hex[:6]}"),
    )
    old, new = KeyRing.parse(old_entry), KeyRing.parse(f"{new_entry},{old_entry}")
    before, after = Transcripts(db, old), Transcripts(db, new)
    for i in range(40):
        send(db, events, before, who, session_id, f"old-{i}", f"lama {i}")
    db.execute(  # a row from before encryption, in clear
        "INSERT INTO chat_messages (session_id, sender_type, sender_id, client_message_id, content) "
        "VALUES (%(s)s, 'customer', %(u)s, 'legacy', 'dulu sekali')",
        {"s": session_id, "u": who.user_id},
    )
    stop = threading.Event()
    written: list[str] = []

    def writer() -> None:  # processes already on the new ring keep writing meanwhile
        i = 0
        while not stop.is_set():
            send(db, events, after, who, session_id, f"new-{i}", f"baru {i}")
            written.append(f"baru {i}")
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        rotated = 0
        while done := rotate_batch(db, after, limit=7):
            rotated += done
            assert len([after.open_row(r) for r in _rows(chat, session_id)]) >= 41  # all readable midway
    finally:
        stop.set()
        thread.join()
    assert rotated == 41
    texts = [after.open_row(r) for r in _rows(chat, session_id)]
    assert sorted(texts) == sorted([f"lama {i}" for i in range(40)] + ["dulu sekali", *written])
    counts = rows_by_master_key(db)
    assert counts.get(old.active, 0) == 0
    assert counts.get("", 0) == 0  # the old key may leave the ring
    assert rotate_batch(db, after) == 0


def test_retention_deletes_old_transcripts_and_keeps_the_sessions(chat: Chat) -> None:
    customer, _, _, session_id = chat.paired()
    _send(chat, customer["access_token"], session_id, "hapus nanti")
    fresh_customer, _, _, fresh = chat.paired()
    _send(chat, fresh_customer["access_token"], fresh, "masih baru")
    db = chat.pay.db
    db.execute(
        "UPDATE chat_sessions SET status = 'completed', completed_at = now() - interval '31 days' WHERE id = %(s)s",
        {"s": session_id},
    )
    db.execute("UPDATE chat_sessions SET status = 'completed', completed_at = now() WHERE id = %(s)s", {"s": fresh})
    assert purge_expired(db, 0) == 0  # 0 keeps forever
    assert _rows(chat, session_id) != []
    while purge_expired(db, 30):
        pass
    assert _rows(chat, session_id) == []
    assert len(_rows(chat, fresh)) == 1
    kept = db.fetch_one("SELECT * FROM chat_sessions WHERE id = %(s)s", {"s": session_id})
    assert kept is not None
    assert kept["transcript_purged_at"] is not None
    assert kept["customer_id"] is not None
    assert purge_expired(db, 30) == 0  # done once
