"""Chat transcripts sealed at rest: every message (goodbyes too) is AES-256-GCM under a data key,
data keys are wrapped by a master key from CHAT_ENCRYPTION_KEYS, and the session id is the
associated data, so a ciphertext copied into another session does not open.

The key ring is `id:base64key,id:base64key,...` (32-byte keys); the first entry is the active one
that new rows are sealed with, the others still open older rows. Rotating: add the new key second
and deploy, then move it first and deploy, then run `python -m runtime rotate-chat-key`, then drop
the old key (docs/privacy.md). Each master key has one data key (table chat_data_keys), made on
first use; a row stores its data key id and its nonce.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lib.config.env import ConfigError, Settings
from lib.db import Database

log = logging.getLogger(__name__)

_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Development and tests only, when no ring is configured: a published key protects nothing, which
# is why staging and production refuse to start without CHAT_ENCRYPTION_KEYS.
INSECURE_DEV_RING = "insecure-dev:" + base64.b64encode(b"halobestie-development-only-key!").decode()


class TranscriptUnreadable(RuntimeError):
    """A sealed row did not open: tampered, moved to another session, or its key left the ring."""


@dataclass(frozen=True)
class KeyRing:
    active: str
    keys: dict[str, bytes] = field(repr=False)

    @classmethod
    def parse(cls, raw: str) -> KeyRing:
        keys: dict[str, bytes] = {}
        for entry in (e.strip() for e in raw.split(",")):
            key_id, sep, encoded = entry.partition(":")
            if not sep or not _ID.match(key_id):
                raise ConfigError("CHAT_ENCRYPTION_KEYS entries are id:base64key (id: letters, digits, . _ -)")
            try:
                key = base64.b64decode(encoded, validate=True)
            except binascii.Error:
                raise ConfigError(f"CHAT_ENCRYPTION_KEYS: key {key_id!r} is not base64") from None
            if len(key) != 32:
                raise ConfigError(f"CHAT_ENCRYPTION_KEYS: key {key_id!r} must be 32 bytes (AES-256), not {len(key)}")
            if key_id in keys:
                raise ConfigError(f"CHAT_ENCRYPTION_KEYS: key id {key_id!r} appears twice")
            keys[key_id] = key
        return cls(active=raw.split(":", 1)[0].strip(), keys=keys)

    @staticmethod
    def generate(key_id: str) -> str:
        """One ring entry with a fresh random key."""
        return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


def key_ring(settings: Settings) -> KeyRing:
    if settings.chat_encryption_keys:
        return KeyRing.parse(settings.chat_encryption_keys)
    if settings.is_dev_or_test:
        log.warning("CHAT_ENCRYPTION_KEYS is not set: transcripts use the published development key")
        return KeyRing.parse(INSECURE_DEV_RING)
    raise ConfigError(
        f"CHAT_ENCRYPTION_KEYS is not set (APP_ENV={settings.app_env}): transcripts cannot be stored; "
        "make a ring with `python -m runtime chat-key new` and keep it with the other secrets"
    )


@dataclass(frozen=True)
class Sealed:
    key_id: str
    nonce: bytes
    ciphertext: bytes


def _wrap_aad(master_id: str) -> bytes:
    return b"halobestie-chat-data-key:" + master_id.encode()


class Transcripts:
    """Seal and open message text; data keys are cached per process once unwrapped."""

    def __init__(self, db: Database, ring: KeyRing) -> None:
        self._db = db
        self.ring = ring
        self._keys: dict[str, AESGCM] = {}
        self._active: str | None = None  # the active master key's data key id
        self._lock = threading.Lock()

    def seal(self, session_id: str, text: str) -> Sealed:
        key_id = self.active_key_id()
        nonce = os.urandom(12)
        ct = self._keys[key_id].encrypt(nonce, text.encode(), uuid.UUID(session_id).bytes)
        return Sealed(key_id, nonce, ct)

    def open(self, session_id: Any, key_id: Any, nonce: bytes, ciphertext: bytes) -> str:
        try:
            return self._key(str(key_id)).decrypt(nonce, ciphertext, uuid.UUID(str(session_id)).bytes).decode()
        except InvalidTag:
            raise TranscriptUnreadable(f"a message under data key {key_id} did not open") from None

    def open_row(self, row: dict[str, Any]) -> str:
        """A chat_messages row's text (a row from before encryption carries it in clear)."""
        if row["ciphertext"] is None:
            return str(row["content"])
        return self.open(row["session_id"], row["key_id"], bytes(row["nonce"]), bytes(row["ciphertext"]))

    def active_key_id(self) -> str:
        if self._active is None:
            with self._lock:
                if self._active is None:
                    self._active = self._active_data_key()
        return self._active

    def _active_data_key(self) -> str:
        """The active master key's data key, made (once, whoever races) on first use."""
        master_id = self.ring.active
        row = self._db.fetch_one(
            "SELECT * FROM chat_data_keys WHERE master_key_id = %(master_key_id)s", {"master_key_id": master_id}
        )
        if row is None:
            nonce, data_key = os.urandom(12), AESGCM.generate_key(bit_length=256)
            wrapped = AESGCM(self.ring.keys[master_id]).encrypt(nonce, data_key, _wrap_aad(master_id))
            self._db.execute(
                "INSERT INTO chat_data_keys (master_key_id, nonce, wrapped) VALUES (%(master_key_id)s, %(nonce)s, %(wrapped)s) "
                "ON CONFLICT (master_key_id) DO NOTHING",
                {"master_key_id": master_id, "nonce": nonce, "wrapped": wrapped},
            )
            row = self._db.fetch_one(
                "SELECT * FROM chat_data_keys WHERE master_key_id = %(master_key_id)s", {"master_key_id": master_id}
            )
            assert row is not None
        key_id = str(row["id"])
        self._keys[key_id] = self._unwrap(row)
        return key_id

    def warm(self) -> None:
        """Unwrap every data key the ring can open (a small table), so opening rows needs no query."""
        for row in self._db.fetch_all(
            "SELECT * FROM chat_data_keys WHERE master_key_id = ANY(%(master_key_ids)s)",
            {"master_key_ids": list(self.ring.keys)},
        ):
            if str(row["id"]) not in self._keys:
                self._keys[str(row["id"])] = self._unwrap(row)

    def _key(self, key_id: str) -> AESGCM:
        key = self._keys.get(key_id)
        if key is None:
            row = self._db.fetch_one("SELECT * FROM chat_data_keys WHERE id = %(key_id)s", {"key_id": key_id})
            if row is None:
                raise TranscriptUnreadable(f"data key {key_id} does not exist")
            key = self._keys[key_id] = self._unwrap(row)
        return key

    def _unwrap(self, row: dict[str, Any]) -> AESGCM:
        master_id = row["master_key_id"]
        master = self.ring.keys.get(master_id)
        if master is None:
            raise TranscriptUnreadable(f"master key {master_id!r} is not in CHAT_ENCRYPTION_KEYS")
        try:
            return AESGCM(AESGCM(master).decrypt(bytes(row["nonce"]), bytes(row["wrapped"]), _wrap_aad(master_id)))
        except InvalidTag:
            raise TranscriptUnreadable(f"data key {row['id']} does not open under master key {master_id!r}") from None


def rotate_batch(db: Database, transcripts: Transcripts, limit: int = 500) -> int:
    """Re-seal up to `limit` rows not under the active data key (rows from before encryption too),
    in one transaction; returns how many. Rows being re-sealed are locked and skipped by a second
    rotator, so any number may run, and a killed run resumes where it stopped."""
    active = transcripts.active_key_id()
    transcripts.warm()  # no second connection needed while this one holds the batch's locks
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT * FROM chat_messages WHERE key_id IS NULL OR key_id <> %(active_key_id)s "
            "ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED",
            {"active_key_id": active, "limit": limit},
        ).fetchall()
        if not rows:
            return 0
        sealed = [transcripts.seal(str(r["session_id"]), transcripts.open_row(r)) for r in rows]
        conn.execute(
            "UPDATE chat_messages m SET content = NULL, key_id = b.k, nonce = b.n, ciphertext = b.c "
            "FROM unnest(%(message_ids)s::uuid[], %(key_ids)s::uuid[], %(nonces)s::bytea[], %(ciphertexts)s::bytea[]) AS b(id, k, n, c) "
            "WHERE m.id = b.id",
            {
                "message_ids": [r["id"] for r in rows],
                "key_ids": [s.key_id for s in sealed],
                "nonces": [s.nonce for s in sealed],
                "ciphertexts": [s.ciphertext for s in sealed],
            },
        )
    return len(rows)


def rows_by_master_key(db: Database) -> dict[str, int]:
    """How many message rows each master key still opens ("" for rows from before encryption):
    a master key may leave the ring once its count is 0."""
    rows = db.fetch_all(
        "SELECT COALESCE(d.master_key_id, '') AS master, count(*) AS n FROM chat_messages m "
        "LEFT JOIN chat_data_keys d ON d.id = m.key_id GROUP BY 1 ORDER BY 1"
    )
    return {r["master"]: int(r["n"]) for r in rows}


def purge_expired(db: Database, retention_days: int, sessions: int = 50) -> int:
    """Delete the messages of up to `sessions` sessions that ended more than `retention_days` ago
    and stamp them; the session rows stay for the control center and accounting. 0 days keeps
    everything."""
    if retention_days <= 0:
        return 0
    rows = db.fetch_all(
        "WITH due AS (SELECT id FROM chat_sessions WHERE transcript_purged_at IS NULL "
        "  AND status IN ('completed', 'cancelled', 'expired') "
        "  AND COALESCE(completed_at, updated_at) < now() - make_interval(days => %(retention_days)s) "
        "  ORDER BY COALESCE(completed_at, updated_at) LIMIT %(limit)s FOR UPDATE SKIP LOCKED), "
        "gone AS (DELETE FROM chat_messages m USING due WHERE m.session_id = due.id) "
        "UPDATE chat_sessions s SET transcript_purged_at = now() FROM due WHERE s.id = due.id RETURNING s.id",
        {"retention_days": retention_days, "limit": sessions},
    )
    return len(rows)
