"""Messages (DOMAIN.md): text of 1..4000 characters, stored (sealed) before anyone hears of it, idempotent
per sender on `client_message_id`; status sent (stored) -> delivered (the recipient's app acked)
-> read. Read receipts are cumulative: `message.status {message_id, status: read}` says that
message and every earlier one from its sender has been read."""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from psycopg import sql

from lib.chat import events as ev
from lib.chat.errors import SessionNotActive, SessionPaused
from lib.chat.events import ChatEvents, Party
from lib.chat.sessions import for_participant
from lib.db import Database
from lib.errors import ApiError, NotFound, RateLimited, ValidationFailed
from lib.inputs import UNSTORABLE, storable
from lib.metrics import m
from lib.pagination import Keyset
from lib.principal import Principal
from lib.transcripts import Transcripts
from lib.valkey import VALKEY_ERRORS, valkey_failed

log = logging.getLogger(__name__)

MAX_LENGTH = 4000
MAX_CLIENT_ID = 100  # characters of a client_message_id
ORDER = Keyset(("seq", "int"), descending=False)  # oldest first, as a chat reads
_PAGE = sql.SQL(
    "SELECT * FROM chat_messages WHERE session_id = %(session_id)s AND seq > %(after)s "
    "AND {after} ORDER BY {order} LIMIT %(limit)s"
).format(after=ORDER.after(), order=ORDER.order())


def message_doc(row: dict[str, Any], content: str) -> dict[str, Any]:
    """A stored message as both parties see it (API.md, WebSocket section); `content` is its text,
    which the row holds sealed (lib/transcripts.py)."""
    return {
        "id": row["id"],
        "session_id": row["session_id"],
        "client_message_id": row["client_message_id"],
        "sender_type": row["sender_type"],
        "kind": row["kind"],
        "content": content,
        "status": row["status"],
        "created_at": row["created_at"],
    }


def other_party(row: dict[str, Any], who: Principal) -> list[Party]:
    if who.user_type == "customer":
        return [ev.mitra(row["mitra_id"])] if row["mitra_id"] else []
    return [ev.customer(row["customer_id"])]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to send: who sends what into which session."""

    who: Principal
    session_id: str
    client_message_id: str
    content: str

    @property
    def key(self) -> tuple[str, str, str]:
        """What makes two sends one message (the unique constraint), ids in canonical form."""
        return str(uuid.UUID(self.session_id)), str(uuid.UUID(self.who.user_id)), self.client_message_id


# The hot path in one statement for any number of messages: the participant check, the state check
# and the idempotent insert. `n` numbers the inputs; an input missing from the result is not the
# sender's session, one with a NULL id was not inserted (a repeat, or the session is not active).
_SEND = (
    "WITH i AS (SELECT * FROM unnest(%(positions)s::int[], %(session_ids)s::uuid[], %(sender_types)s::text[], "
    "%(sender_ids)s::uuid[], %(client_message_ids)s::text[], "
    "%(key_ids)s::uuid[], %(nonces)s::bytea[], %(ciphertexts)s::bytea[]) AS i(n, s, t, u, cm, k, nonce, c)), "
    "s AS (SELECT i.*, cs.status AS session_status, cs.customer_id AS session_customer, cs.mitra_id AS session_mitra "
    "FROM i JOIN chat_sessions cs ON cs.id = i.s "
    "AND CASE i.t WHEN 'customer' THEN cs.customer_id ELSE cs.mitra_id END = i.u), "
    "ins AS (INSERT INTO chat_messages (session_id, sender_type, sender_id, client_message_id, key_id, nonce, ciphertext) "
    "SELECT s, t, u, cm, k, nonce, c FROM s WHERE session_status = 'active' ORDER BY n "
    "ON CONFLICT (session_id, sender_id, client_message_id) DO NOTHING RETURNING *) "
    "SELECT s.n, s.session_status, s.session_customer, s.session_mitra, ins.* "
    "FROM s LEFT JOIN ins ON ins.session_id = s.s AND ins.sender_id = s.u AND ins.client_message_id = s.cm"
)
_EARLIER = (
    "SELECT i.n, m.* FROM unnest(%(positions)s::int[], %(session_ids)s::uuid[], %(sender_ids)s::uuid[], "
    "%(client_message_ids)s::text[]) AS i(n, s, u, cm) "
    "JOIN chat_messages m ON m.session_id = i.s AND m.sender_id = i.u AND m.client_message_id = i.cm"
)

Sent = tuple[dict[str, Any], bool] | ApiError
_TOLD_WHILE = frozenset({"active", "extending", "closing"})  # a repeat is told again while the chat is on


@dataclass(frozen=True, slots=True)
class Quota:
    """At most `per_minute` messages per sender in each minute, REST and WebSocket together
    (MESSAGES_PER_MINUTE): one fixed window per sender in Valkey, a whole batch counted in one
    pipeline. While Valkey is away the limit is not counted (messages are still stored; each socket
    keeps its own frame limit, runtime/gateway/server.py)."""

    valkey: redis.Redis
    per_minute: int
    window_seconds: int = 60

    def refusals(self, senders: Sequence[str]) -> list[RateLimited | None]:
        """For each message of `senders` (user ids, in order): RateLimited when it is over the limit."""
        now = time.time()
        start = int(now // self.window_seconds) * self.window_seconds
        wanted = Counter(senders)
        keys = [f"rl:messages:{sender}:{start}" for sender in wanted]
        try:
            pipe = self.valkey.pipeline(transaction=False)
            for key, n in zip(keys, wanted.values(), strict=True):
                pipe.incrby(key, n)
                pipe.expire(key, self.window_seconds + 5, nx=True)
            totals = pipe.execute()[::2]
        except VALKEY_ERRORS:
            valkey_failed("messages")
            return [None] * len(senders)
        # A sender's messages take the counts (total - wanted, total] in order: the later ones are refused.
        before = {sender: int(total) - wanted[sender] for sender, total in zip(wanted, totals, strict=True)}
        retry_after = int(start + self.window_seconds - now) + 1
        out: list[RateLimited | None] = []
        for sender in senders:
            before[sender] += 1
            if before[sender] > self.per_minute:
                m().rate_limited.labels("messages").inc()
                out.append(RateLimited("Too many messages", retry_after=retry_after))
            else:
                out.append(None)
        return out

    def give_back(self, senders: Sequence[str], counted_at: float) -> None:
        """Uncount messages `refusals` counted at `counted_at` that turned out to be repeats of
        stored ones the other party has (an app re-sending after a reconnect): only what is stored
        or told again costs the sender, so repeats cannot flood the other party."""
        start = int(counted_at // self.window_seconds) * self.window_seconds
        try:
            pipe = self.valkey.pipeline(transaction=False)
            for sender, n in Counter(senders).items():
                pipe.decrby(f"rl:messages:{sender}:{start}", n)
            pipe.execute()
        except VALKEY_ERRORS:
            valkey_failed("messages")


def send(
    db: Database,
    events: ChatEvents,
    transcripts: Transcripts,
    who: Principal,
    session_id: str,
    client_message_id: str,
    content: str,
    *,
    quota: Quota | None = None,
) -> tuple[dict[str, Any], bool]:
    """(the stored message, whether this call stored it). A repeat of a `client_message_id` answers
    with the message stored the first time, told again to the other party until their app says it
    has it."""
    (outcome,) = send_many(
        db, events, transcripts, [Outgoing(who, session_id, client_message_id, content)], quota=quota
    )
    if isinstance(outcome, ApiError):
        raise outcome
    return outcome


def refused(item: Outgoing) -> ApiError | None:
    """Why `item` cannot be stored, judged on its own: its text (storable, of the right length, not
    blank) and its ids, so it can never fail a statement it shares with other senders' messages."""
    fields: dict[str, list[str]] = {}
    cmid, content = item.client_message_id, item.content
    if not isinstance(cmid, str) or not storable(cmid):
        fields["client_message_id"] = [UNSTORABLE]
    elif not 1 <= len(cmid) <= MAX_CLIENT_ID:
        fields["client_message_id"] = [f"Length must be between 1 and {MAX_CLIENT_ID}."]
    if not isinstance(content, str) or not storable(content):
        fields["content"] = [UNSTORABLE]
    elif not 1 <= len(content) <= MAX_LENGTH:
        fields["content"] = [f"Length must be between 1 and {MAX_LENGTH}."]
    elif not content.strip():
        fields["content"] = ["Must not be blank."]
    if fields:
        return ValidationFailed(fields)
    try:
        _ = item.key  # the ids parse, or the item is refused here
    except (ValueError, TypeError, AttributeError):
        return NotFound()  # as for another user's session
    return None


def send_many(
    db: Database,
    events: ChatEvents,
    transcripts: Transcripts,
    items: Sequence[Outgoing],
    *,
    quota: Quota | None = None,
) -> list[Sent]:
    """`send` for many messages at once (the gateway gathers the frames that arrive while earlier
    ones are stored): one statement, one more for repeats, one publish. Each item's outcome is its
    own: it is judged alone first (`refused`, then the sender's `quota`), and one item's error (not
    a participant, session paused) leaves the others stored. Should the shared statement still fail
    on an item's data, each item is stored alone, so the fault stays with its own item."""
    outcomes: list[Sent | None] = [None] * len(items)
    first: dict[tuple[str, str, str], int] = {}  # an item sent twice in one batch is a repeat of the first
    todo: list[tuple[int, Outgoing]] = []
    for i, item in enumerate(items):
        error = refused(item)
        if error is not None:
            outcomes[i] = error
        elif first.setdefault(item.key, i) == i:
            todo.append((i, item))
    counted_at = time.time()
    if todo and quota is not None:
        over = quota.refusals([item.who.user_id for _, item in todo])
        for (i, _), refusal in zip(todo, over, strict=True):
            outcomes[i] = refusal
        todo = [(i, item) for (i, item), refusal in zip(todo, over, strict=True) if refusal is None]
    if todo:
        retold = _store_each_on_failure(db, events, transcripts, todo, outcomes)
        silent = [
            item.who.user_id
            for i, item in todo
            if isinstance(sent := outcomes[i], tuple) and not sent[1] and i not in retold
        ]
        if silent and quota is not None:
            quota.give_back(silent, counted_at)
    done: list[Sent] = []
    for i, item in enumerate(items):
        outcome = outcomes[i]
        if outcome is None:  # a repeat within the batch: what its first copy got
            earlier = outcomes[first[item.key]]
            assert earlier is not None
            outcome = (earlier[0], False) if isinstance(earlier, tuple) else earlier
        done.append(outcome)
    return done


def _store_each_on_failure(
    db: Database, events: ChatEvents, transcripts: Transcripts, todo: list[tuple[int, Outgoing]], out: list[Sent | None]
) -> set[int]:
    """`_store` for all at once; if that fails for anything but an unavailable database (which each
    would meet alone as well), once more for each item alone. A batch of one fails as it is."""
    try:
        return _store(db, events, transcripts, todo, out)
    except ApiError as exc:
        if len(todo) == 1 or exc.status >= 500:
            raise
        reason = exc.code
    except Exception as exc:
        if len(todo) == 1:
            raise
        reason = type(exc).__name__
    log.warning("a batch of %d messages failed (%s): each is stored alone", len(todo), reason)
    retold: set[int] = set()
    for one in todo:
        try:
            retold |= _store(db, events, transcripts, [one], out)
        except ApiError as exc:
            out[one[0]] = exc
        except Exception:
            log.exception("a message could not be stored")
            out[one[0]] = ApiError()
    return retold


def _store(
    db: Database, events: ChatEvents, transcripts: Transcripts, todo: list[tuple[int, Outgoing]], out: list[Sent | None]
) -> set[int]:
    """Stores `todo`, puts each item's outcome in `out`, publishes what the other parties must hear;
    returns the repeats that were told again (they count as messages of the minute)."""
    sealed = [transcripts.seal(item.session_id, item.content) for _, item in todo]
    rows = db.fetch_all(
        _SEND,
        {
            "positions": [i for i, _ in todo],
            "session_ids": [item.session_id for _, item in todo],
            "sender_types": [item.who.user_type for _, item in todo],
            "sender_ids": [item.who.user_id for _, item in todo],
            "client_message_ids": [item.client_message_id for _, item in todo],
            "key_ids": [x.key_id for x in sealed],
            "nonces": [x.nonce for x in sealed],
            "ciphertexts": [x.ciphertext for x in sealed],
        },
    )
    by_input = {row["n"]: row for row in rows}
    published = []
    repeats: list[tuple[int, Outgoing]] = []
    retold: set[int] = set()
    for i, item in todo:
        row = by_input.get(i)
        if row is None:
            out[i] = NotFound()  # another user's session looks like a missing one
        elif row["id"] is None:
            repeats.append((i, item))
        else:
            doc = message_doc(row, item.content)
            out[i] = (doc, True)
            session = {"customer_id": row["session_customer"], "mitra_id": row["session_mitra"]}
            published.append((other_party(session, item.who), "message.new", doc))
    if repeats:
        earlier = db.fetch_all(
            _EARLIER,
            {
                "positions": [i for i, _ in repeats],
                "session_ids": [item.session_id for _, item in repeats],
                "sender_ids": [item.who.user_id for _, item in repeats],
                "client_message_ids": [item.client_message_id for _, item in repeats],
            },
        )
        found = {r["n"]: r for r in earlier}
        for i, item in repeats:
            stored = found.get(i)
            if stored is not None:
                doc = message_doc(stored, transcripts.open_row(stored))
                out[i] = (doc, False)
                if stored["delivered_at"] is None and by_input[i]["session_status"] in _TOLD_WHILE:
                    # The sender heard no answer, and the process that stored the message may have
                    # died between its commit and its publish (a retry can come at once, so no time
                    # since the first try tells). Told again until the other party's app says it has
                    # this very message (`delivered`; a cumulative `read` up to a later one is no
                    # proof: it could have been read past unseen). Apps keep one bubble per id.
                    row = by_input[i]
                    session = {"customer_id": row["session_customer"], "mitra_id": row["session_mitra"]}
                    published.append((other_party(session, item.who), "message.new", doc))
                    retold.add(i)
            else:
                out[i] = SessionPaused() if by_input[i]["session_status"] == "extending" else SessionNotActive()
    if published:
        events.publish_each(published)
    return retold


def page(
    db: Database, transcripts: Transcripts, who: Principal, session_id: str, query: dict[str, Any]
) -> dict[str, Any]:
    """Messages oldest first, after `after` (a message id) when given, as a cursor page."""
    for_participant(db, who, session_id)
    after = 0
    if query.get("after"):
        row = db.fetch_one(
            "SELECT seq FROM chat_messages WHERE id = %(message_id)s AND session_id = %(session_id)s",
            {"message_id": query["after"], "session_id": session_id},
        )
        if row is None:
            raise ValidationFailed({"after": ["Not a message of this chat."]})
        after = int(row["seq"])
    rows = db.fetch_all(
        _PAGE,
        {"session_id": session_id, "after": after, **ORDER.params(query)},
    )
    return ORDER.page(rows, query["limit"], lambda r: message_doc(r, transcripts.open_row(r)))


# `read` up to a message: that one and every earlier one of the other side. The one named was on
# screen, so it counts as delivered too; the earlier ones may have been read past unseen (a message
# stored while its publish was lost), so their delivered_at stays as it was (see _store).
_READ = (
    "UPDATE chat_messages SET status = 'read', read_at = now(), "
    "delivered_at = CASE WHEN id = %(message_id)s THEN coalesce(delivered_at, now()) ELSE delivered_at END "
    "WHERE session_id = %(session_id)s AND sender_type <> %(reader_type)s "
    "AND seq <= (SELECT seq FROM chat_messages WHERE id = %(message_id)s AND session_id = %(session_id)s) "
    "AND status IN ('sent', 'delivered') RETURNING id, seq, status"
)
# `delivered`: that message, also when a cumulative `read` got to it first (its status stays `read`).
_DELIVERED = (
    "UPDATE chat_messages SET delivered_at = now(), "
    "status = CASE WHEN status = 'sent' THEN 'delivered' ELSE status END "
    "WHERE session_id = %(session_id)s AND sender_type <> %(reader_type)s AND id = %(message_id)s "
    "AND delivered_at IS NULL RETURNING id, seq, status"
)


def mark(db: Database, events: ChatEvents, who: Principal, session_id: str, message_id: str, status: str) -> list[str]:
    """`read`: every message from the other side up to `message_id`; `delivered`: that one. The
    sender hears `message.status` once, for the newest message that changed."""
    session = for_participant(db, who, session_id)
    if (
        db.fetch_one(
            "SELECT 1 FROM chat_messages WHERE id = %(message_id)s AND session_id = %(session_id)s",
            {"message_id": message_id, "session_id": session_id},
        )
        is None
    ):
        raise ValidationFailed({"message_id": ["Not a message of this chat."]})
    rows = db.fetch_all(
        _READ if status == "read" else _DELIVERED,
        {"session_id": session_id, "reader_type": who.user_type, "message_id": message_id},
    )
    rows = [r for r in rows if r["status"] == status]  # a read message acknowledged late stays read
    if rows:
        newest = max(rows, key=lambda r: r["seq"])
        events.publish(other_party(session, who), "message.status", {"message_id": newest["id"], "status": status})
    return [str(r["id"]) for r in rows]
