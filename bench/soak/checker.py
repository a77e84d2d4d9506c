"""The invariants of a soak run, checked over its history: what the apps logged, what PostgreSQL holds
and what the fake Xendit took. Pure data in, violations out, so a hand-built history tests it."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

LOST, DUPLICATED, STUCK, UNACCOUNTED = "lost", "duplicated", "stuck", "unaccounted payments"
KINDS = (LOST, DUPLICATED, STUCK, UNACCOUNTED)
# Events a deadline (or a decision settled by one) sends once: heard twice on one socket, it fired twice.
ONCE_EVENTS = ("session.closing", "session.completed", "session.extended", "extension.resolved", "pairing.expired")


@dataclass
class Sent:
    """A message an app sent and what it was told: `acked` is `message.sent` or a 201."""

    session_id: str
    sender_id: str
    client_message_id: str
    via: str  # "ws" | "rest"
    acked: bool
    message_id: str | None
    log: str  # the app's log line of the acknowledgement
    tries: int = 1  # times the app transmitted it (a frame, then REST when no ack came in time, ...)


@dataclass
class Shown:
    """A message an app put on screen: live (`message.new`) or through a re-sync."""

    user_id: str
    session_id: str
    message_id: str
    client_message_id: str
    how: str  # "live" | "resync"
    socket: str  # the connection that heard it ("rest" for a re-sync)


@dataclass
class Stored:
    """A row of chat_messages (kind text)."""

    id: str
    session_id: str
    sender_id: str
    client_message_id: str


@dataclass
class Heard:
    """A once-only event one socket connection received."""

    socket: str
    user_id: str
    type: str
    key: str  # the session or extension it is about
    log: str


@dataclass
class Due:
    """Something with a deadline: a session step, an extension decision or payment, a payment request."""

    kind: str  # "session" | "extension" | "payment_request"
    id: str
    status: str
    due: datetime | None


@dataclass
class PaidInvoice:
    """An invoice the fake Xendit took money for, and where PostgreSQL put that money."""

    invoice_id: str
    external_id: str
    amount: int
    places: list[str]  # "session <id>", "extension <id>", "refund <id>"
    in_flight: bool = False  # confirmed a moment ago: its search is still running


@dataclass
class History:
    sent: list[Sent] = field(default_factory=list)
    shown: list[Shown] = field(default_factory=list)
    stored: list[Stored] = field(default_factory=list)
    parties: dict[str, tuple[str, str]] = field(default_factory=dict)  # session -> (customer, mitra)
    heard: list[Heard] = field(default_factory=list)
    due: list[Due] = field(default_factory=list)
    slots: list[tuple[str, int, int]] = field(default_factory=list)  # (mitra, Valkey's live count, PostgreSQL's)
    paid: list[PaidInvoice] = field(default_factory=list)
    served_unpaid: list[str] = field(default_factory=list)  # sessions or extensions consumed with no paid invoice
    now: datetime | None = None


@dataclass
class Violation:
    kind: str
    what: str
    lines: list[str] = field(default_factory=list)

    def render(self) -> str:
        return "\n".join([f"VIOLATION {self.kind}: {self.what}", *(f"    {line}" for line in self.lines)])


# What is live in each state, and the deadline that must move it (DOMAIN.md's lifecycle).
SESSION_MOVES = {"searching", "active", "closing"}
EXTENSION_MOVES = {"pending", "approved"}
PAYMENT_MOVES = {"pending"}


def check(h: History, grace: timedelta) -> list[Violation]:
    """Every violation of the four invariants, in a stable order."""
    return [*_lost(h), *_duplicated(h), *_stuck(h, grace), *_unaccounted(h)]


def counts(violations: list[Violation]) -> dict[str, int]:
    found = Counter(v.kind for v in violations)
    return {kind: found.get(kind, 0) for kind in KINDS}


def _lost(h: History) -> list[Violation]:
    out = []
    stored = {(s.session_id, s.sender_id, s.client_message_id): s for s in h.stored}
    shown_by: dict[tuple[str, str], set[str]] = defaultdict(set)  # (user, session) -> message ids on screen
    for s in h.shown:
        shown_by[(s.user_id, s.session_id)].add(s.message_id)
    for m in h.sent:
        if not m.acked:
            continue
        row = stored.get((m.session_id, m.sender_id, m.client_message_id))
        if row is None:
            out.append(
                Violation(
                    LOST,
                    f"message {m.client_message_id} of {m.sender_id} in session {m.session_id} acknowledged, not stored",
                    [m.log],
                )
            )
            continue
        customer, mitra = h.parties.get(m.session_id, ("", ""))
        other = mitra if m.sender_id == customer else customer
        if other and row.id not in shown_by[(other, m.session_id)]:
            out.append(
                Violation(
                    LOST,
                    f"message {row.id} ({m.client_message_id}) in session {m.session_id} never reached {other}",
                    [m.log, f"{other} showed {len(shown_by[(other, m.session_id)])} messages of that session"],
                )
            )
    return out


def _more_than_once(pairs: Iterable[tuple[tuple[str, str, str], str]]) -> list[tuple[tuple[str, str, str], list[str]]]:
    """The keys that came with more than one value, and those values, in a stable order."""
    groups: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for key, value in pairs:
        groups[key].append(value)
    return sorted((key, values) for key, values in groups.items() if len(values) > 1)


def _duplicated(h: History) -> list[Violation]:
    out = []
    rows = (((r.session_id, r.sender_id, r.client_message_id), r.id) for r in h.stored)
    for (session, sender, cmid), stored in _more_than_once(rows):
        out.append(Violation(DUPLICATED, f"{cmid} of {sender} stored {len(stored)} times in {session}", stored))
    # On one screen, one client_message_id of one sender is one bubble: two message ids for it (or
    # one message heard twice live on one socket) is a duplicate the user sees. The exception is the
    # one docs/realtime.md promises: a message its sender transmitted again (before the other
    # party's app acknowledged it `delivered`) is published again, and the app keeps one bubble per
    # id. A message sent once and heard twice is still a duplicate.
    retried = {(s.session_id, s.client_message_id) for s in h.sent if s.tries > 1}  # acknowledged or not
    ids_by_cmid: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    live: Counter[tuple[str, str]] = Counter()
    for s in h.shown:
        ids_by_cmid[(s.user_id, s.session_id, s.client_message_id)].add(s.message_id)
        if s.how == "live" and (s.session_id, s.client_message_id) not in retried:
            live[(s.socket, s.message_id)] += 1
    for (user, session, cmid), ids in sorted(ids_by_cmid.items()):
        if len(ids) > 1:
            out.append(Violation(DUPLICATED, f"{user} shows {cmid} as {len(ids)} messages in {session}", sorted(ids)))
    for (socket, message), n in sorted(live.items()):
        if n > 1:
            out.append(Violation(DUPLICATED, f"message {message} delivered {n} times on socket {socket}"))
    return out


def _stuck(h: History, grace: timedelta) -> list[Violation]:
    out = []
    now = h.now
    moves = {"session": SESSION_MOVES, "extension": EXTENSION_MOVES, "payment_request": PAYMENT_MOVES}
    if now is not None:
        for d in h.due:
            if d.status in moves.get(d.kind, set()) and d.due is not None and d.due + grace < now:
                late = (now - d.due).total_seconds()
                out.append(Violation(STUCK, f"{d.kind} {d.id} still {d.status} {late:.0f} s past its deadline {d.due}"))
    for (socket, kind, key), logs in _more_than_once(((e.socket, e.type, e.key), e.log) for e in h.heard):
        out.append(Violation(STUCK, f"{kind} for {key} fired {len(logs)} times (socket {socket})", logs))
    for mitra, valkey_live, pg_live in h.slots:
        if valkey_live > pg_live:
            out.append(
                Violation(
                    STUCK,
                    f"mitra {mitra} holds {valkey_live - pg_live} slot(s) no live session uses",
                    [f"Valkey mitra:capacity = {valkey_live}, live sessions in PostgreSQL = {pg_live}"],
                )
            )
    return out


def _unaccounted(h: History) -> list[Violation]:
    out = []
    for p in h.paid:
        if len(p.places) == 1 or (not p.places and p.in_flight):
            continue
        what = "in no place" if not p.places else f"in {len(p.places)} places (charged twice)"
        out.append(
            Violation(
                UNACCOUNTED,
                f"invoice {p.invoice_id} of request {p.external_id} (IDR {p.amount}) paid at Xendit, {what}",
                p.places,
            )
        )
    for served in h.served_unpaid:
        out.append(Violation(UNACCOUNTED, f"{served} was served with no paid invoice behind it"))
    return out


def summary(sessions: int, messages: int, faults: int, found: dict[str, int]) -> str:
    """The last line of every run (issue 27 fixes its form)."""
    return (
        f"soak: {sessions} sessions, {messages} messages, faults {faults}; lost {found[LOST]}, "
        f"duplicated {found[DUPLICATED]}, stuck {found[STUCK]}, unaccounted payments {found[UNACCOUNTED]}"
    )
