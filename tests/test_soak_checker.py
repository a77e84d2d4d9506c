"""The soak's invariant checker (bench/soak/checker.py) against a hand-built history holding one lost,
one duplicated, one stuck and one unaccounted item: each is reported, so the checker cannot pass
silently; and the clean history beside it reports nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import httpx

from bench.soak.apps import CLOSED_HERE, Record, Reply, causes
from bench.soak.checker import (
    DUPLICATED,
    LOST,
    STUCK,
    UNACCOUNTED,
    Due,
    Heard,
    History,
    PaidInvoice,
    Sent,
    Shown,
    Stored,
    check,
    counts,
    summary,
)
from bench.soak.faults import Fault
from bench.soak.history import errors_outside

NOW = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
GRACE = timedelta(seconds=45)
S1, S2 = "session-1", "session-2"
CUSTOMER, MITRA = "customer-1", "mitra-1"


def clean() -> History:
    """Two sessions, each message stored once and shown to the other party, deadlines ahead, the
    money in exactly one place each."""
    h = History(now=NOW, parties={S1: (CUSTOMER, MITRA), S2: ("customer-2", MITRA)})
    h.sent = [
        Sent(S1, CUSTOMER, "c-1", "ws", True, "m-1", "1.00 c1: message.sent m-1 c-1 (ws)"),
        Sent(S1, MITRA, "b-1", "rest", True, "m-2", "2.00 m1: 201 m-2 b-1 (rest)"),
    ]
    h.stored = [Stored("m-1", S1, CUSTOMER, "c-1"), Stored("m-2", S1, MITRA, "b-1")]
    h.shown = [
        Shown(MITRA, S1, "m-1", "c-1", "live", "m1/general#1"),
        Shown(CUSTOMER, S1, "m-2", "b-1", "resync", "rest"),
    ]
    h.due = [
        Due("session", S1, "active", NOW + timedelta(minutes=1)),
        Due("session", S2, "completed", NOW - timedelta(minutes=5)),
        Due("payment_request", "pr-1", "consumed", NOW - timedelta(minutes=20)),
    ]
    h.slots = [(MITRA, 1, 1)]
    h.paid = [
        PaidInvoice("inv_0001", "pr-1", 10000, [f"session {S1}"]),
        PaidInvoice("inv_0002", "pr-2", 10000, ["refund r-1 (ALREADY_ACTIVE)"]),
        PaidInvoice("inv_0003", "pr-3", 10000, [], in_flight=True),
    ]
    return h


def test_a_clean_history_has_no_violation() -> None:
    assert check(clean(), GRACE) == []
    assert summary(2, 2, 3, counts([])) == (
        "soak: 2 sessions, 2 messages, faults 3; lost 0, duplicated 0, stuck 0, unaccounted payments 0"
    )


def test_one_of_each_is_reported_with_its_ids() -> None:
    h = clean()
    # Lost: acknowledged to the customer, never stored.
    h.sent.append(Sent(S1, CUSTOMER, "c-2", "ws", True, "m-9", "3.00 c1: message.sent m-9 c-2 (ws)"))
    # Duplicated: the mitra's screen shows one client_message_id as two messages.
    h.shown.append(Shown(CUSTOMER, S1, "m-7", "b-1", "resync", "rest"))
    # Stuck: a session still active a minute past its end.
    h.due.append(Due("session", S2, "active", NOW - timedelta(minutes=2)))
    # Unaccounted: money taken at Xendit that bought nothing and is owed back by nobody.
    h.paid.append(PaidInvoice("inv_0004", "pr-4", 10000, []))

    violations = check(h, GRACE)

    assert counts(violations) == {LOST: 1, DUPLICATED: 1, STUCK: 1, UNACCOUNTED: 1}
    text = "\n".join(v.render() for v in violations)
    for evidence in ("c-2", "message.sent m-9 c-2", "b-1", "m-7", f"session {S2} still active", "inv_0004", "pr-4"):
        assert evidence in text, evidence
    assert summary(2, 3, 3, counts(violations)).endswith("lost 1, duplicated 1, stuck 1, unaccounted payments 1")


def test_the_other_ways_each_invariant_breaks() -> None:
    h = clean()
    # Stored, but the other party never saw it, live or through a re-sync: lost.
    h.sent.append(Sent(S1, MITRA, "b-2", "ws", True, "m-3", "4.00 m1: message.sent m-3 b-2 (ws)"))
    h.stored.append(Stored("m-3", S1, MITRA, "b-2"))
    # One message delivered twice on one socket: duplicated. (Not so for a message its sender sent
    # again, which the server re-publishes as docs/realtime.md says.)
    h.shown.append(Shown(MITRA, S1, "m-1", "c-1", "live", "m1/general#1"))
    h.sent.append(Sent(S1, MITRA, "b-3", "rest", True, "m-4", "4.50 m1: 201 m-4 b-3 (rest, try 2)", tries=2))
    h.stored.append(Stored("m-4", S1, MITRA, "b-3"))
    h.shown += [Shown(CUSTOMER, S1, "m-4", "b-3", "live", "c1/session#1")] * 2
    # ...acknowledged or not: the sender may have given up while the message was stored.
    h.sent.append(Sent(S1, MITRA, "b-4", "ws", False, None, "", tries=3))
    h.stored.append(Stored("m-5", S1, MITRA, "b-4"))
    h.shown += [Shown(CUSTOMER, S1, "m-5", "b-4", "live", "c1/session#1")] * 2
    # A deadline fired twice (one socket heard the session close twice), and a slot no session holds.
    h.heard += [Heard("c1/session-#1", CUSTOMER, "session.closing", S1, f"5.00 c1: closing {S1}")] * 2
    h.slots.append(("mitra-2", 2, 0))
    # Charged twice: one invoice consumed by a session and refunded too; a chat nobody paid for.
    h.paid.append(PaidInvoice("inv_0005", "pr-5", 10000, ["session s-5", "refund r-5 (SECOND_PAYMENT)"]))
    h.served_unpaid.append("session s-6")

    found = counts(check(h, GRACE))

    assert found == {LOST: 1, DUPLICATED: 1, STUCK: 2, UNACCOUNTED: 2}


def test_a_try_closed_by_the_apps_own_client_is_told_apart_from_one_no_replica_answered() -> None:
    """httpx's ReadError over anyio's ClosedResourceError is this side closing the connection under the
    request (encode/httpcore#1110): counted apart, never as a server's failure. A reset by the peer,
    or any other unanswered try outside a fault window, still fails the run."""

    def raised(inner: BaseException) -> httpx.ReadError:
        try:
            try:
                raise inner
            except BaseException as exc:
                raise httpx.ReadError("") from exc
        except httpx.ReadError as outer:
            return outer

    here = causes(raised(anyio.ClosedResourceError()))
    reset = causes(raised(ConnectionResetError(104, "Connection reset by peer")))
    assert here.startswith(CLOSED_HERE)
    assert "ClosedResourceError" in here
    assert not reset.startswith(CLOSED_HERE)
    assert "Connection reset by peer" in reset
    record = Record()
    record.replies = [
        Reply(100.8, "m12", "GET", "/x", 0, 99.3, here),
        Reply(200.8, "m13", "POST", "/y", 0, 199.3, reset),
        Reply(300.8, "m14", "POST", "/z", 503, 300.7),
        Reply(401.0, "m15", "POST", "/w", 0, 400.5, reset),  # in flight during the kill at 400 s
    ]
    kill = Fault(400.0, "kill", "public-1")
    kill.started, kill.healed = 400.0, 401.5
    outside = errors_outside(record, [kill])
    assert [r.who for r in outside] == ["m13", "m14"]
