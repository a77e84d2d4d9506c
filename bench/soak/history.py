"""The run's history for the checker: PostgreSQL's rows, the fake Xendit's invoices, every app's log;
and the figures beside the invariants (5xx outside fault windows, deadline lateness)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import psycopg
import redis
from psycopg.rows import dict_row

from bench.soak.apps import CLOSED_HERE, Record, Reply
from bench.soak.checker import Due, History, PaidInvoice, Stored
from bench.soak.faults import Fault
from lib.presence.keys import capacity_key

LIVE = ("active", "extending", "closing")


def collect(db_url: str, valkey_url: str, record: Record, invoices: list[dict[str, Any]]) -> History:
    h = History(sent=list(record.sent), shown=list(record.shown), heard=list(record.heard))
    with psycopg.connect(db_url, row_factory=dict_row, autocommit=True) as conn:
        h.now = conn.execute("SELECT now() AS now").fetchone()["now"]  # type: ignore[index]
        for r in conn.execute(
            "SELECT id::text, session_id::text, sender_id::text, client_message_id FROM chat_messages "
            "WHERE kind = 'text'"
        ):
            h.stored.append(Stored(r["id"], r["session_id"], r["sender_id"], r["client_message_id"]))
        sessions = conn.execute(
            "SELECT id::text, customer_id::text, mitra_id::text, status, search_expires_at, expires_at, "
            "closing_expires_at FROM chat_sessions"
        ).fetchall()
        for s in sessions:
            h.parties[s["id"]] = (s["customer_id"], s["mitra_id"] or "")
            due = {"searching": s["search_expires_at"], "active": s["expires_at"], "closing": s["closing_expires_at"]}
            h.due.append(Due("session", s["id"], s["status"], due.get(s["status"])))
        for e in conn.execute("SELECT id::text, status, expires_at, pay_by FROM session_extensions"):
            h.due.append(
                Due("extension", e["id"], e["status"], e["pay_by"] if e["status"] == "approved" else e["expires_at"])
            )
        for p in conn.execute("SELECT id::text, status, expires_at FROM payment_requests"):
            h.due.append(Due("payment_request", p["id"], p["status"], p["expires_at"]))
        h.paid = _paid(conn, invoices)
        h.served_unpaid = [
            f"session {r['id']}"
            for r in conn.execute(
                "SELECT s.id::text FROM chat_sessions s JOIN payment_requests p ON p.id = s.payment_request_id "
                "WHERE s.started_at IS NOT NULL AND p.paid_invoice_id IS NULL"
            )
        ]
        live = {
            r["mitra_id"]: r["n"]
            for r in conn.execute(
                "SELECT m.id::text AS mitra_id, count(s.id) AS n FROM mitras m LEFT JOIN chat_sessions s "
                "ON s.mitra_id = m.id AND s.status = ANY(%(live)s) GROUP BY m.id",
                {"live": list(LIVE)},
            )
        }
    client = redis.Redis.from_url(valkey_url, socket_timeout=2)
    for mitra, n in sorted(live.items()):
        held = client.get(capacity_key(mitra))
        if held is not None:
            h.slots.append((mitra, int(held), int(n)))
    return h


def _paid(conn: psycopg.Connection[Any], invoices: list[dict[str, Any]]) -> list[PaidInvoice]:
    """Each invoice the fake Xendit holds as paid, with every place PostgreSQL put its money."""
    out = []
    for inv in invoices:
        if inv["status"] not in ("PAID", "SETTLED"):
            continue
        places = [
            f"session {r['id']}"
            for r in conn.execute(
                "SELECT s.id::text FROM chat_sessions s JOIN payment_requests p ON p.id = s.payment_request_id "
                "WHERE p.id::text = %(p)s AND p.paid_invoice_id = %(i)s AND p.status = 'consumed' "
                "AND s.started_at IS NOT NULL",
                {"p": inv["external_id"], "i": inv["id"]},
            )
        ]
        places += [
            f"extension {r['id']}"
            for r in conn.execute(
                "SELECT e.id::text FROM session_extensions e JOIN payment_requests p ON p.id = e.payment_request_id "
                "WHERE p.id::text = %(p)s AND p.paid_invoice_id = %(i)s AND e.status = 'paid'",
                {"p": inv["external_id"], "i": inv["id"]},
            )
        ]
        places += [
            f"refund {r['id']} ({r['reason']})"
            for r in conn.execute("SELECT id::text, reason FROM refunds WHERE invoice_id = %(i)s", {"i": inv["id"]})
        ]
        flight = conn.execute(
            "SELECT 1 FROM payment_requests WHERE id::text = %(p)s AND status = 'confirmed' "
            "AND confirmed_at > now() - interval '2 minutes'",
            {"p": inv["external_id"]},
        ).fetchone()
        out.append(PaidInvoice(inv["id"], inv["external_id"], int(inv["amount"]), places, flight is not None))
    return out


def in_window(at: float, faults: list[Fault], margin: float = 5.0, since: float | None = None) -> bool:
    """Whether `at` (or any moment from `since` to `at`) falls in a fault's window."""
    start = at if since is None else since
    return any(f.started - 0.5 <= at and start <= (f.healed or f.started + 120) + margin for f in faults)


def errors_outside(record: Record, faults: list[Fault]) -> list[Reply]:
    """5xx answers (and no answer at all) to tries that were not in flight during any fault window:
    a request sent just before a kill and timed out 15 s later met the fault. A try whose connection
    the app's own HTTP client closed (apps.CLOSED_HERE) met no server and is counted apart."""
    return [
        r
        for r in record.replies
        if (r.status >= 500 or r.status == 0)
        and not r.error.startswith(CLOSED_HERE)
        and not in_window(r.at, faults, since=r.sent_at)
    ]


def lateness(db_url: str, faults: list[Fault], wall0: datetime, t0: float) -> list[str]:
    """Deadline lateness, in seconds: those due outside any fault, and those due during one measured
    from its heal (the lateness after recovery)."""
    rows: list[tuple[str, datetime, datetime]] = []  # (what, due, fired)
    with psycopg.connect(db_url, row_factory=dict_row, autocommit=True) as conn:
        for r in conn.execute(
            "SELECT 'end of session ' || id AS what, expires_at AS due, ended_at AS fired FROM chat_sessions s "
            "WHERE ended_by = 'system' AND ended_at >= expires_at AND status IN ('closing', 'completed') "
            # An extension that came to nothing also closes the chat (not a deadline of expires_at).
            "AND NOT EXISTS (SELECT 1 FROM session_extensions e WHERE e.session_id = s.id AND e.status <> 'paid') "
            "UNION ALL SELECT 'goodbye grace of ' || id, closing_expires_at, completed_at FROM chat_sessions "
            "WHERE status = 'completed' AND completed_at >= closing_expires_at "
            "UNION ALL SELECT 'search of ' || id, search_expires_at, ended_at FROM chat_sessions "
            "WHERE status = 'expired' AND ended_at >= search_expires_at "
            "UNION ALL SELECT 'extension decision ' || id, expires_at, decided_at FROM session_extensions "
            "WHERE decided_by LIKE 'auto%%'"
        ):
            rows.append((r["what"], r["due"], r["fired"]))
    quiet: list[float] = []
    after: list[float] = []
    worst: list[tuple[float, str]] = []
    for what, due, fired in rows:
        if due is None or fired is None:
            continue
        at = t0 + (due - wall0).total_seconds()
        hit = [f for f in faults if f.started - 0.5 <= at <= (f.healed or f.started + 120)]
        if hit:
            healed = max(f.healed or f.started for f in hit)
            after.append((fired - due).total_seconds() - (healed - at))
        else:
            quiet.append((fired - due).total_seconds())
            worst.append((quiet[-1], f"{what} due {due:%H:%M:%S.%f} fired {fired:%H:%M:%S.%f}"))

    def fmt(xs: list[float]) -> str:
        if not xs:
            return "none fired"
        xs.sort()
        return f"p50 {xs[len(xs) // 2]:.2f} s, max {xs[-1]:.2f} s over {len(xs)}"

    lines = [
        f"  deadlines due outside faults: {fmt(quiet)}",
        f"  due during a fault, late after its heal: {fmt(after)}",
    ]
    lines += [f"    {late:6.2f} s late: {what}" for late, what in sorted(worst, reverse=True)[:3] if late > 2]
    return lines


def live_sessions(db_url: str) -> int | None:
    """Chats open right now (active, extending or closing); None while PostgreSQL does not answer."""
    try:
        with psycopg.connect(db_url, autocommit=True, connect_timeout=3) as conn:
            row = conn.execute(
                "SELECT count(*) FROM chat_sessions WHERE status IN ('active', 'extending', 'closing')"
            ).fetchone()
    except psycopg.Error:
        return None
    return int(row[0]) if row else None


def status_counts(db_url: str) -> Counter[str]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return Counter(
            {str(s): int(n) for s, n in conn.execute("SELECT status, count(*) FROM chat_sessions GROUP BY 1")}
        )
