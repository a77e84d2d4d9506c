"""Customer profile reads and edits, and the per-process profile cache behind GET /api/client/me."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg

from lib.auth.accounts import customer_doc
from lib.db import Database, contains
from lib.errors import NotFound, Unauthorized

log = logging.getLogger(__name__)

CHANGES = "customers_changed"  # migrations/0012: every UPDATE or DELETE of a customer row, at commit


def profile(db: Database, customer_id: str) -> dict[str, Any]:
    row = db.fetch_one("SELECT * FROM customers WHERE id = %(id)s", {"id": customer_id})
    if row is None:  # a token for a customer that no longer exists
        raise Unauthorized("Account not found")
    return customer_doc(row)


class Profiles:
    """`profile` from memory. Each process keeps the profiles it served; PostgreSQL tells it of
    every change to a customer row, whoever makes it (a trigger NOTIFYs at commit; one LISTEN
    connection per process), and the entry is dropped. While that connection is down nothing is
    kept (every read goes to PostgreSQL) and everything kept before is dropped, since changes may
    have been missed; entries also lapse after `ttl` as a last resort.

    A read that raced a change is not kept: a generation counter moves with every change heard,
    and a profile is stored only if it did not move while the row was being read. What is left is
    the moment between a commit and its notification reaching the listener (about a millisecond),
    during which another process may still answer with the profile from before; the process that
    made the change forgets it at once (`forget`)."""

    def __init__(self, db: Database, *, ttl: float = 60.0, max_entries: int = 100_000) -> None:
        self._db = db
        self._ttl = ttl
        self._max = max_entries
        self._rows: dict[str, tuple[float, dict[str, Any]]] = {}
        self._generation = 0
        self._listening = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def get(self, customer_id: str) -> dict[str, Any]:
        """The profile (shared: callers must not change it); Unauthorized for a customer that is gone."""
        if self._thread is None:
            self.start()
        now = time.monotonic()
        kept = self._rows.get(customer_id)
        if kept is not None and kept[0] > now:
            return kept[1]
        generation = self._generation
        doc = self._load(customer_id)
        with self._lock:
            if self._listening and self._generation == generation:
                if len(self._rows) >= self._max:
                    self._rows.pop(next(iter(self._rows)))  # the oldest entry
                self._rows[customer_id] = (now + self._ttl, doc)
        return doc

    def _load(self, customer_id: str) -> dict[str, Any]:
        return profile(self._db, customer_id)

    def forget(self, customer_id: str) -> None:
        with self._lock:
            self._generation += 1
            self._rows.pop(customer_id, None)

    @property
    def listening(self) -> bool:
        return self._listening

    def start(self) -> None:
        """Start listening (the first `get` does it otherwise); nothing is kept until it listens."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._listen, name="profile-changes", daemon=True)
                self._thread.start()

    def _set_listening(self, listening: bool) -> None:
        with self._lock:
            self._listening = listening
            self._generation += 1
            self._rows.clear()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                with self._db.dedicated("profile-changes") as conn:
                    conn.execute(f"LISTEN {CHANGES}")
                    self._set_listening(True)
                    checked = time.monotonic()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):  # short, so close() is quick
                            self.forget(note.payload)
                        if time.monotonic() - checked > 5.0:
                            conn.execute("SELECT 1")  # a dead link shows here, not only when a change is due
                            checked = time.monotonic()
            except psycopg.Error as exc:
                if self._listening:
                    log.warning("profile cache off: lost the LISTEN connection (%s)", type(exc).__name__)
            finally:
                self._set_listening(False)
            self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=3)


def search_customers(db: Database, q: str | None, position: dict[str, Any]) -> list[dict[str, Any]]:
    """Newest first; `q` matches the call name, the e-mail or the phone."""
    return db.fetch_all(
        "SELECT * FROM customers WHERE (%(q)s::text IS NULL OR display_name ILIKE %(like)s "
        "OR email ILIKE %(like)s OR phone LIKE %(like)s) "
        "AND (%(k0)s::timestamptz IS NULL OR (created_at, id) < (%(k0)s, %(k1)s)) "
        "ORDER BY created_at DESC, id DESC LIMIT %(n)s",
        {"q": q, "like": contains(q), **position},
    )


def customer_record(db: Database, customer_id: str) -> dict[str, Any]:
    row = db.fetch_one("SELECT * FROM customers WHERE id = %(id)s", {"id": customer_id})
    if row is None:
        raise NotFound()
    summary = db.fetch_one(
        "SELECT (SELECT count(*) FROM chat_sessions WHERE customer_id = %(id)s AND started_at IS NOT NULL) AS sessions, "
        "(SELECT max(started_at) FROM chat_sessions WHERE customer_id = %(id)s) AS last_session_at, "
        "(SELECT count(*) FROM payment_requests WHERE customer_id = %(id)s AND status IN ('confirmed', 'consumed', "
        "'failed_pairing')) AS payments, "
        "(SELECT COALESCE(sum(COALESCE(paid_amount, amount)), 0) FROM payment_requests WHERE customer_id = %(id)s "
        "AND confirmed_at IS NOT NULL) AS paid_total",
        {"id": customer_id},
    )
    identities = db.fetch_all(
        "SELECT provider, email, created_at FROM customer_identities WHERE customer_id = %(id)s ORDER BY created_at",
        {"id": customer_id},
    )
    return {
        **customer_doc(row),
        "account_belongs_to": row["account_belongs_to"],
        "first_active_session_at": row["first_active_session_at"],
        "last_login_at": row["last_login_at"],
        "identities": identities,
        **(summary or {}),
    }
