"""Fair share on the real gateway process: sockets per user (the oldest closed with 4429), frames
per second per socket (RATE_LIMITED, at most one error frame a second), messages per minute per
sender across REST and the socket, `typing` answered from the socket's memory of its session (and
still right after a reroute), a frame type held after RATE_LIMITED until its retry_after (and only
until then), and a presence refresh that one bad entry cannot fail."""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any

import psycopg
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from lib.chat.messages import Quota, send
from lib.config.env import Settings
from lib.errors import RateLimited
from lib.frames import TYPING_RELAY_SECONDS
from lib.principal import Principal
from lib.services import Services
from runtime.gateway import Gateway, discover_frames
from runtime.gateway.connections import JUNK_LIMIT, JUNK_WINDOW, POLICY, TRY_AGAIN, Connection
from runtime.gateway.server import ANSWERED, JUNK, OPEN_REFUSAL_HOLD
from tests.chatflow import Chat
from tests.conftest import bearer
from tests.helpers import free_port
from tests.runtime.test_gateway_abuse import _ok, close_code_after, no_traceback, watched_gateway
from tests.wsclient import Client, gateway, socket


def _alive(client: Client) -> bool:
    client.send({"type": "ping"})
    return bool(client.until("pong")["type"] == "pong")


def test_one_socket_over_the_cap_closes_the_users_oldest_with_4429(settings: Settings, chat: Chat) -> None:
    customer = chat.customer()
    other = chat.customer("Lain")
    token = customer["access_token"]
    with (
        gateway(settings, WS_SOCKETS_PER_USER="2") as (url, _),
        socket(url, token) as first,
        socket(url, token) as second,
        socket(url, other["access_token"]) as bystander,
    ):
        for client in (first, second, bystander):
            _ok(client)
        with socket(url, token) as third:
            _ok(third)
            assert first.closed_with() == 4429
            assert _alive(second)
            assert _alive(third)
            assert _alive(bystander)
            with socket(url, token) as fourth:
                _ok(fourth)
                assert second.closed_with() == 4429
                assert _alive(third)
                assert _alive(fourth)
                assert _alive(bystander)


def _refused(scrape: str) -> dict[str, float]:
    text = requests.get(scrape, timeout=5).text
    return {
        s.labels["reason"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "halobestie_gateway_frames_refused_total"
    }


def test_frames_over_the_rate_are_dropped_with_one_error_a_second(settings: Settings, chat: Chat) -> None:
    customer = chat.customer()
    flood = 60
    metrics_port = free_port()
    env = {"WS_FRAMES_PER_SECOND": "5", "METRICS_PORT": str(metrics_port)}
    with gateway(settings, **env) as (url, _), socket(url, customer["access_token"]) as me:
        _ok(me)
        started = time.monotonic()
        for _ in range(flood):
            me.send({"type": "ping"})
        frames = []
        try:
            while True:
                frames.append(me.next(timeout=1.5))
        except TimeoutError:
            pass
        elapsed = time.monotonic() - started
        pongs = [f for f in frames if f["type"] == "pong"]
        errors = [f["data"] for f in frames if f["type"] == "error"]
        assert 5 <= len(pongs) < flood
        assert errors
        assert all(e["code"] == "RATE_LIMITED" and e["type"] == "ping" for e in errors)
        assert len(errors) <= math.ceil(elapsed) + 1  # a flood is not echoed back frame for frame
        scrape, counted = f"http://127.0.0.1:{metrics_port}/metrics", None
        for _ in range(50):  # the process adds its counts to the shared metric files once a second
            counted = _refused(scrape).get("rate")
            if counted == flood - len(pongs):
                break
            time.sleep(0.1)
        assert counted == flood - len(pongs)
        time.sleep(1.0)  # a second's worth of frames again
        assert _alive(me)


def _fresh_window() -> None:
    """Start the counting in a fixed window with time to spare, so the test never straddles two."""
    into = time.time() % 60
    if into > 50:
        time.sleep(60.5 - into)


def test_a_junk_frame_costs_its_socket_ten_frames_time_and_drops_nothing(settings: Settings, chat: Chat) -> None:
    """Junk is answered, but the socket is then not read for 10 / WS_FRAMES_PER_SECOND seconds: a
    hostile socket's junk costs the gateway a parse twice a second, not at the full frame rate
    (runtime/gateway/server.py, REFUSED_FRAME_COST). Nothing sent meanwhile is dropped."""
    customer = chat.customer()
    with gateway(settings, WS_FRAMES_PER_SECOND="20") as (url, _), socket(url, customer["access_token"]) as me:
        _ok(me)
        started = time.monotonic()
        for n in range(4):
            me.send({"type": f"nope-{n}"})
        me.send({"type": "ping"})
        codes = [me.next()["data"].get("code") for _ in range(4)]
        assert codes == ["UNKNOWN_TYPE"] * 4
        assert me.next()["type"] == "pong"  # read after the pauses, not dropped as over the rate
        assert time.monotonic() - started >= 4 * 10 / 20  # never sooner: four pauses of half a second
        # A refusal of the moment (here an app acking on its general socket) costs nothing more:
        # eight of them would take four seconds of pauses.
        started = time.monotonic()
        for n in range(8):
            me.send({"type": "message.read", "message_id": f"m-{n}"})
        me.send({"type": "ping"})
        assert [me.next()["data"].get("code") for _ in range(8)] == ["NO_SESSION"] * 8
        assert me.next()["type"] == "pong"
        assert time.monotonic() - started < 3.0


def test_a_socket_that_keeps_sending_junk_is_closed_1008_and_no_one_else_is(settings: Settings, chat: Chat) -> None:
    """JUNK_LIMIT junk frames within JUNK_WINDOW seconds: each is answered until the last, which
    closes its socket with 1008 (never 1011). The user's other socket and another user's are
    untouched."""
    customer = chat.customer()
    other = chat.customer("Lain")
    token = customer["access_token"]
    with (
        gateway(settings, WS_FRAMES_PER_SECOND="1000") as (url, _),  # a junk frame's pause: 10 ms
        socket(url, token) as me,
        socket(url, token) as mine,
        socket(url, other["access_token"]) as bystander,
    ):
        for client in (me, mine, bystander):
            _ok(client)
        for n in range(JUNK_LIMIT - 1):
            me.send({"type": f"nope-{n}"})
        assert [me.next()["data"].get("code") for _ in range(JUNK_LIMIT - 1)] == ["UNKNOWN_TYPE"] * (JUNK_LIMIT - 1)
        assert _alive(me)  # one short of the limit: still served
        me.ws.send("{not json")
        assert me.closed_with() == POLICY
        assert _alive(mine)
        assert _alive(bystander)
        # Its next opens on this process are refused for the minute, as past WS_OPENS_PER_MINUTE.
        with socket(url, token) as again:
            assert again.closed_with(timeout=2 * OPEN_REFUSAL_HOLD + 5) == TRY_AGAIN
            assert not [f for f in again.seen if f["type"] == "auth.ok"]
        assert _alive(mine)


def test_a_user_closed_1008_on_one_gateway_process_is_refused_on_the_others(settings: Settings, chat: Chat) -> None:
    """The bar travels over the bus: an attacker reopened each socket closed 1008 at once, and
    half of the reopened ones landed on a process that had not barred the user."""
    token = chat.customer()["access_token"]
    with (
        gateway(settings, WS_FRAMES_PER_SECOND="1000") as (url, _),
        gateway(settings, WS_FRAMES_PER_SECOND="1000") as (elsewhere, _),
        socket(elsewhere, chat.customer("Lain")["access_token"]) as bystander,
    ):
        _ok(bystander)  # its auth.ok waited for the bus: the process's subscriptions are confirmed
        with socket(url, token) as me:
            _ok(me)
            for _ in range(JUNK_LIMIT):
                me.ws.send("{not json")
            assert me.closed_with() == POLICY
        time.sleep(0.5)  # the bar was published before the close; the bus delivers it meanwhile
        with socket(elsewhere, token) as again:
            assert again.closed_with(timeout=2 * OPEN_REFUSAL_HOLD + 5) == TRY_AGAIN
            assert not [f for f in again.seen if f["type"] == "auth.ok"]
        assert _alive(bystander)


def test_junk_spread_wider_than_the_window_is_only_answered() -> None:
    conn = Connection(ws=None, principal=None, session_id=None)  # type: ignore[arg-type]
    assert not any(conn.junk_over(float(t)) for t in range(JUNK_LIMIT - 1))
    assert not conn.junk_over(JUNK_WINDOW + 1.0)  # the first of the ten is older than the window
    assert conn.junk_over(JUNK_WINDOW + 1.0)  # ten within it: the second (at 1.0) .. this one


def test_sockets_opened_past_the_minute_allowance_are_held_then_closed_1013(settings: Settings, chat: Chat) -> None:
    """WS_OPENS_PER_MINUTE per user and process: one more is not admitted (no auth.ok), held a while
    so a reconnect loop costs a handshake every few seconds, then closed 1013 (try again later).
    Another user opens sockets as ever."""
    customer = chat.customer()
    other = chat.customer("Lain")
    token = customer["access_token"]
    with gateway(settings, WS_OPENS_PER_MINUTE="2") as (url, _):
        for _ in range(2):
            with socket(url, token) as fine:
                _ok(fine)
        started = time.monotonic()
        with socket(url, token) as refused, socket(url, other["access_token"]) as bystander:
            _ok(bystander)  # answered while the refused socket is held
            assert refused.closed_with(timeout=2 * OPEN_REFUSAL_HOLD + 5) == TRY_AGAIN
            assert time.monotonic() - started >= OPEN_REFUSAL_HOLD - 0.5
            assert not [f for f in refused.seen if f["type"] == "auth.ok"]
            assert _alive(bystander)


def test_the_gateway_measures_its_loop_lag(settings: Settings, chat: Chat) -> None:
    metrics_port = free_port()
    with gateway(settings, METRICS_PORT=str(metrics_port)) as _:
        time.sleep(1.5)
        text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    counts = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "halobestie_gateway_loop_lag_seconds_count"
    ]
    assert counts
    assert sum(counts) >= 5  # sampled every 0.1 s by each worker process


def test_messages_per_minute_count_rest_and_socket_together(settings: Settings, chat: Chat) -> None:
    customer, _, mitra_token, session_id = chat.paired()
    s = chat.pay
    quota = Quota(s.valkey, 5)  # what REST passes (functions/shared/chat/messages/create.py)
    who = Principal("customer", customer["user"]["id"], "x")
    _fresh_window()
    with (
        gateway(settings, MESSAGES_PER_MINUTE="5") as (url, _),
        socket(url, customer["access_token"], session_id) as me,
        socket(url, mitra_token, session_id) as bestie,
    ):
        _ok(me)
        _ok(bestie)
        for n in range(3):
            me.send({"type": "message.send", "client_message_id": f"ws-{n}", "content": f"pesan {n}"})
            assert me.until("message.sent")["data"]["client_message_id"] == f"ws-{n}"
        for n in range(2):
            send(s.db, s.chat_events, s.transcripts, who, session_id, f"rest-{n}", "lewat REST", quota=quota)
        with pytest.raises(RateLimited):
            send(s.db, s.chat_events, s.transcripts, who, session_id, "rest-2", "satu lagi", quota=quota)
        me.send({"type": "message.send", "client_message_id": "ws-3", "content": "kebanyakan"})
        refused = me.until("error")["data"]
        assert refused["code"] == "RATE_LIMITED"
        assert refused["type"] == "message.send"
        assert 1 <= refused["retry_after_seconds"] <= 61
        # Sent anyway before that: the gateway answers it itself, no longer counting it in Valkey
        # beside the honest senders' batches (a flood past the limit once shared them).
        window = int(time.time() // 60) * 60
        key = f"rl:messages:{customer['user']['id']}:{window}"
        counted = s.valkey.get(key)
        assert counted is not None  # the key the quota counts in
        me.send({"type": "message.send", "client_message_id": "ws-4", "content": "masih kebanyakan"})
        again = me.until("error")["data"]
        assert (again["code"], again["type"]) == ("RATE_LIMITED", "message.send")
        assert again["message"] == refused["message"]
        assert 1 <= again["retry_after_seconds"] <= refused["retry_after_seconds"]
        assert s.valkey.get(key) == counted
        bestie.send({"type": "message.send", "client_message_id": "m-1", "content": "aku masih bisa"})
        assert bestie.until("message.sent")["data"]["content"] == "aku masih bisa"  # per sender
    stored = s.db.fetch_all("SELECT client_message_id FROM chat_messages ORDER BY seq")
    assert [r["client_message_id"] for r in stored] == ["ws-0", "ws-1", "ws-2", "rest-0", "rest-1", "m-1"]


def test_a_held_frame_type_is_handled_as_ever_once_its_retry_after_has_passed(chat: Chat) -> None:
    """Connection.held lapses: a message.send sent before the retry_after it was told is answered by
    the gateway alone; the first one after it goes to the batch, is stored and answered, and the
    socket is no longer held."""
    customer, _, _, session_id = chat.paired()
    heard: list[dict[str, Any]] = []

    class Socket:
        async def send_text(self, text: str) -> None:
            heard.append(json.loads(text))

    def frame(cmid: str) -> str:
        return json.dumps({"type": "message.send", "client_message_id": cmid, "content": "halo"})

    async def run() -> tuple[int, int, Any]:
        gateway = Gateway(chat.pay, discover_frames())
        gateway.loop = loop = asyncio.get_running_loop()
        principal = Principal("customer", customer["user"]["id"], "sign-in")
        conn = Connection(Socket(), principal, session_id, allowance=20.0, refilled=loop.time())  # type: ignore[arg-type]
        try:
            conn.held = ("message.send", loop.time() + 30.0, "Too many messages")
            early = await gateway._handle(conn, frame("early"))
            conn.held = ("message.send", loop.time() - 0.01, "Too many messages")
            lapsed = await gateway._handle(conn, frame("lapsed"))
            await asyncio.sleep(0.2)  # the socket's outbox drains
            return early, lapsed, conn.held
        finally:
            gateway.pool.shutdown()

    early, lapsed, held = asyncio.run(run())
    assert (early, lapsed, held) == (JUNK, ANSWERED, None)
    assert [(f["type"], f["data"].get("code")) for f in heard] == [("error", "RATE_LIMITED"), ("message.sent", None)]
    assert heard[1]["data"]["client_message_id"] == "lapsed"
    stored = chat.pay.db.fetch_all("SELECT client_message_id FROM chat_messages")
    assert [r["client_message_id"] for r in stored] == ["lapsed"]


def test_the_rest_send_counts_against_the_same_limit(settings: Settings, chat: Chat) -> None:
    customer, _, _, session_id = chat.paired()
    limit = chat.pay.settings.messages_per_minute
    _fresh_window()
    codes = [
        chat.app.simulate_post(
            f"/api/shared/chat/{session_id}/messages",
            headers=bearer(customer["access_token"]),
            json={"client_message_id": f"r-{n}", "content": "halo"},
        ).status_code
        for n in range(limit + 1)
    ]
    assert codes == [201] * limit + [429]


def _typing_heard(client: Client) -> dict[str, Any]:
    frame: dict[str, Any] = client.until("typing", timeout=3)["data"]
    return frame


def test_typing_needs_no_query_per_frame_and_follows_a_reroute(settings: Settings, chat: Chat) -> None:
    customer, _, first_token, session_id = chat.paired()
    second, second_token = chat.mitra("Kedua")
    with (
        gateway(settings) as (url, _),
        socket(url, customer["access_token"], session_id) as me,
        socket(url, first_token, session_id) as first,
        socket(url, second_token) as later,
    ):
        for client in (me, first, later):
            _ok(client)
        me.send({"type": "typing"})
        assert _typing_heard(first)["sender_type"] == "customer"
        for _ in range(5):  # a storm within the second: the other party has heard all it says
            me.send({"type": "typing"})
        time.sleep(TYPING_RELAY_SECONDS)
        with psycopg.connect(chat.pay.db.dsn) as holder:
            # Nobody can read the session table now; a typing frame that queried it would wait.
            holder.execute("LOCK TABLE chat_sessions IN ACCESS EXCLUSIVE MODE")
            me.send({"type": "typing"})
            assert _typing_heard(first)["session_id"] == session_id
            holder.rollback()
        me.send({"type": "message.send", "client_message_id": "penanda", "content": "halo"})
        first.until("message.new")
        assert [f["type"] for f in first.seen].count("typing") == 2  # the first, and the one a second later
        moved = chat.cc.simulate_post(
            f"/internal/sessions/{session_id}/reroute",
            headers=bearer(chat.admin()),
            json={"mitra_id": str(second["id"])},
        )
        assert moved.status_code == 200, moved.text
        assert me.until("session.rerouted")["data"]["mitra"]["id"] == str(second["id"])
        me.send({"type": "typing"})
        assert _typing_heard(later) == {"session_id": session_id, "sender_type": "customer"}
        _, code = close_code_after(first)
        assert code == 4403  # the previous mitra is no longer a participant


def test_a_presence_refresh_is_not_failed_by_one_bad_entry(services: Services) -> None:
    gateway = Gateway(services, {})
    try:
        gateway.announce([("ws:customer:a", "p|*"), ("ws:customer:b", "p|\ud800"), ("ws:customer:c", "p|*")])
    finally:
        gateway.pool.shutdown()
    assert services.valkey.zscore("ws:customer:a", "p|*")
    assert services.valkey.zscore("ws:customer:c", "p|*")
    assert not services.valkey.exists("ws:customer:b")


def test_no_limit_logs_a_traceback(settings: Settings, chat: Chat) -> None:
    """Refusals are ordinary outcomes: a flood over every limit leaves no traceback behind."""
    customer, _, _, session_id = chat.paired()
    env = {"WS_FRAMES_PER_SECOND": "3", "MESSAGES_PER_MINUTE": "2", "WS_SOCKETS_PER_USER": "1"}
    with watched_gateway(settings, **env) as (url, log), socket(url, customer["access_token"], session_id) as me:
        _ok(me)
        for n in range(20):
            me.send({"type": "message.send", "client_message_id": f"f-{n}", "content": "banjir"})
        with socket(url, customer["access_token"], session_id) as again:
            _ok(again)
            assert me.closed_with() == 4429
    no_traceback(log)
