"""The chat-session vocabulary (DOMAIN.md, "Session lifecycle"): every state, the groups other
modules ask about, and the transitions allowed between them. Nothing else spells these out.

    searching -> active <-> extending -> closing -> completed
    searching -> cancelled | expired (no mitra)
"""

from __future__ import annotations

from psycopg import sql

SEARCHING = "searching"
ACTIVE = "active"
EXTENDING = "extending"
CLOSING = "closing"
COMPLETED = "completed"
CANCELLED = "cancelled"
EXPIRED = "expired"

STATES = (SEARCHING, ACTIVE, EXTENDING, CLOSING, COMPLETED, CANCELLED, EXPIRED)
# A live session holds one of its mitra's slots: closing too, the mitra is still in it.
LIVE = (ACTIVE, EXTENDING, CLOSING)
# A customer has at most one open session: looking for a mitra, or live.
OPEN = (SEARCHING, *LIVE)
ENDED = (COMPLETED, CANCELLED, EXPIRED)

TRANSITIONS: dict[str, frozenset[str]] = {
    SEARCHING: frozenset({ACTIVE, CANCELLED, EXPIRED}),
    ACTIVE: frozenset({EXTENDING, CLOSING}),
    EXTENDING: frozenset({ACTIVE, CLOSING}),
    CLOSING: frozenset({COMPLETED}),
    COMPLETED: frozenset(),
    CANCELLED: frozenset(),
    EXPIRED: frozenset(),
}


def can_move(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def in_states(column: str, states: tuple[str, ...]) -> sql.Composed:
    """`<column> IN ('a', 'b')` with the states as literals, not parameters: the planner matches
    literal predicates to partial indexes (chat_sessions_live_by_mitra_idx is `WHERE status IN
    ('active', 'extending', 'closing')`), which a bound parameter would keep it from doing."""
    return sql.SQL("{} IN ({})").format(
        sql.Identifier(*column.split(".")), sql.SQL(", ").join(sql.Literal(s) for s in states)
    )
