"""Hypothesis-driven frames against the real gateway process, beside an honest pair on the same
process. Properties: no socket is ever closed with 1011, the gateway never logs a traceback, the
hostile socket is answered and stays open unless it kept sending junk (then 1008, and it opens a
new one), and the honest pair keeps every message."""

from __future__ import annotations

import json
from contextlib import ExitStack
from typing import Any

import hypothesis
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from lib.config.env import Settings
from lib.frames import MAX_FRAME_BYTES
from runtime.gateway.connections import POLICY
from tests.chatflow import Chat
from tests.runtime.test_gateway_abuse import _ok, no_traceback, watched_gateway
from tests.wsclient import Client, socket

TYPES = ["auth", "ping", "typing", "message.send", "message.delivered", "message.read", "nope", ""]
FIELDS = ["type", "client_message_id", "content", "message_id", "up_to_message_id", "session_id", "token"]

# Text as attackers send it: JSON escapes make lone surrogates and NUL arrive intact.
texts = st.text(max_size=40) | st.sampled_from(["\ud800", "a\udfffb", "\x00", " ", "\u202e", "x" * 4001])
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | texts
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4), max_leaves=12
)


@st.composite
def shaped(draw: st.DrawFn) -> str:
    """A frame that looks like ours: a known type and our fields, with any values."""
    frame: dict[str, Any] = {"type": draw(st.sampled_from(TYPES) | texts)}
    for name in draw(st.lists(st.sampled_from(FIELDS[1:]), max_size=4, unique=True)):
        frame[name] = draw(values | st.uuids().map(str))
    return json.dumps(frame)


raw = st.text(alphabet=st.characters(codec="utf-8"), max_size=60)  # sendable as a text frame
deep = st.builds(lambda n, c: c * n, st.integers(1, 1800), st.sampled_from(["[", '{"a":', '{"type":[']))
# Frames within MAX_FRAME_BYTES: a larger one is refused with 1009 before the gateway sees it
# (runtime/worker_class.py; tests/runtime/test_gateway.py covers that).
frame = (shaped() | values.map(json.dumps) | raw | deep).filter(lambda t: len(t.encode()) <= MAX_FRAME_BYTES)
frames = st.lists(frame, min_size=1, max_size=6)


# What the hostile socket may hear: answers and refusals, never INTERNAL_ERROR.
REFUSALS = {"BAD_FRAME", "VALIDATION_ERROR", "UNKNOWN_TYPE", "NO_SESSION", "TEXT_ONLY", "RATE_LIMITED", "NOT_FOUND"}


def test_fuzzed_frames_never_hurt_the_gateway_or_an_honest_pair(settings: Settings, chat: Chat) -> None:
    # Each hostile socket after a 1008 is another user's in another session (a user whose socket
    # was closed for junk opens none for a minute), all signed up from the test's one address.
    chat.config(anonymous_signups_per_ip_per_hour=10000)
    customer, _, mitra_token, session_id = chat.paired()
    # Let every frame reach the parser.
    env = {"WS_FRAMES_PER_SECOND": "10000", "MESSAGES_PER_MINUTE": "100000", "WS_OPENS_PER_MINUTE": "100000"}
    kept: list[str] = []
    with ExitStack() as stack:
        url, log = stack.enter_context(watched_gateway(settings, **env))
        me = stack.enter_context(socket(url, customer["access_token"], session_id))
        bestie = stack.enter_context(socket(url, mitra_token, session_id))
        _ok(me)
        _ok(bestie)
        attackers = ExitStack()
        stack.enter_context(attackers)
        current: list[Client] = []

        def attacker() -> Client:
            if not current:
                hostile, _, _, hostile_session = chat.paired()
                client = attackers.enter_context(socket(url, hostile["access_token"], hostile_session))
                _ok(client)
                current.append(client)
            return current[0]

        @hypothesis.settings(
            max_examples=200,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
        )
        @given(batch=frames, as_auth=st.booleans())
        def example(batch: list[str], as_auth: bool) -> None:
            n = len(kept)
            if as_auth:  # the first frame of a fresh socket: refused with 4401 (or 4403), never 1011
                with socket(url, None, first=batch[0]) as fresh:
                    assert fresh.closed_with() in (4401, 4403)
            else:
                client = attacker()
                try:
                    for text in batch:
                        client.ws.send(text)
                    client.send({"type": "message.send", "client_message_id": f"s-{n}", "content": "sentinel"})
                    while (frame := client.next())["data"].get("client_message_id") != f"s-{n}":
                        assert frame["type"] != "error" or frame["data"]["code"] in REFUSALS, frame
                except ConnectionClosed as closed:
                    current.clear()  # the next example gets a fresh socket, so shrinking stays honest
                    if closed.rcvd is None or closed.rcvd.code != POLICY:  # it kept sending junk
                        raise
            me.send({"type": "message.send", "client_message_id": f"h-{n}", "content": f"jujur {n}"})
            assert me.until("message.sent")["data"]["client_message_id"] == f"h-{n}"
            assert bestie.until("message.new")["data"]["client_message_id"] == f"h-{n}"
            kept.append(f"h-{n}")

        example()
    stored = chat.pay.db.fetch_all(
        "SELECT client_message_id FROM chat_messages WHERE session_id = %(s)s ORDER BY seq", {"s": session_id}
    )
    assert [r["client_message_id"] for r in stored] == kept
    no_traceback(log)
