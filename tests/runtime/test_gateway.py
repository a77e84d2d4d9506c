"""The WebSocket gateway served by gunicorn, with a real WebSocket client: auth paths, both parties
chatting with receipts and typing, two gateway processes, revocation and deactivation closing
sockets, SIGTERM -> 1001, Valkey stopped mid-test, frame limits and slow readers."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

import psycopg
import pytest
import redis
import requests
from websockets.sync.client import connect

from lib import sockets
from lib.auth.tokens import issue_access_token
from lib.chat import events as ev
from lib.config.env import Settings
from lib.services import Services
from runtime.container import build_services
from runtime.gateway import Gateway
from tests.chatflow import Chat
from tests.conftest import bearer
from tests.fakes import FakeFcm
from tests.helpers import free_port
from tests.runtime.test_gateway_abuse import close_code_after
from tests.wsclient import Client, gateway, socket


@pytest.fixture
def ws_url(settings: Settings) -> Iterator[str]:
    with gateway(settings) as (url, _):
        yield url


def _ok(client: Client) -> dict[str, Any]:
    frame = client.next()
    assert frame["type"] == "auth.ok", frame
    return frame


def test_the_gateway_runs_on_uvloop(settings: Settings) -> None:
    """gunicorn's worker is given uvloop (its public asgi_loop setting, which falls back to asyncio
    with a warning when uvloop will not import), and the gateway logs the loop it runs on."""
    with gateway(settings) as (_, proc):
        assert proc.stdout is not None
        fd, out = proc.stdout.fileno(), b""  # the descriptor itself: select cannot see a text buffer
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and b"gateway started on" not in out:
            if select.select([fd], [], [], 0.5)[0]:
                out += os.read(fd, 65536)
    assert b"gateway started on uvloop.Loop" in out, out[-2000:]


def test_auth_paths(ws_url: str, chat: Chat) -> None:
    customer, _, mitra_token, session_id = chat.paired()
    stranger = chat.customer("Lain")
    with socket(ws_url, customer["access_token"]) as general:
        ok = _ok(general)
        assert ok["data"] == {"user_type": "customer", "user_id": customer["user"]["id"], "session_id": None}
        assert ok["at"].endswith("Z")
    with socket(ws_url, mitra_token, session_id) as joined:
        assert _ok(joined)["data"]["session_id"] == session_id
    cases: list[tuple[Any, int]] = [
        ({"type": "auth", "token": "not-a-jwt"}, 4401),
        ({"type": "ping"}, 4401),
        ("not json", 4401),
        ({"type": "auth", "token": chat.admin()}, 4401),  # a control-center token has the wrong audience
        ({"type": "auth", "token": stranger["access_token"], "session_id": session_id}, 4403),
        ({"type": "auth", "token": customer["access_token"], "session_id": "not-a-uuid"}, 4403),
    ]
    for first, code in cases:
        with socket(ws_url, None, first=first) as refused:
            assert refused.closed_with() == code, first
    # The token never travels in the URL: a token in the query string is not looked at.
    with connect(f"{ws_url}?token={customer['access_token']}", open_timeout=5) as ws:
        ws.send(json.dumps({"type": "ping"}))
        assert Client(ws).closed_with() == 4401


def test_a_socket_closes_4401_when_its_token_expires(ws_url: str, settings: Settings, chat: Chat) -> None:
    """The app refreshes its token and reconnects; a socket of another token stays, and one whose
    token expired closes within the sweep's second, not at the next frame it sends."""
    customer = chat.customer("Sebentar")
    claims = {"user_type": "customer", "user_id": customer["user"]["id"], "session_id": str(uuid.uuid4())}
    short, expires_at = issue_access_token(settings.auth_jwt_secret, ttl_seconds=3, **claims)
    with socket(ws_url, short) as ending, socket(ws_url, customer["access_token"]) as staying:
        _ok(ending)
        _ok(staying)
        assert ending.closed_with(timeout=6) == 4401
        assert expires_at <= time.time() < expires_at + 2.5  # expiry is checked with a second's leeway
        staying.send({"type": "ping"})
        assert staying.until("pong")["type"] == "pong"


def test_no_auth_frame_in_time_is_4401(settings: Settings) -> None:
    with gateway(settings, REALTIME_AUTH_TIMEOUT_SECONDS="0.5") as (url, _), socket(url, None) as silent:
        started = time.monotonic()
        assert silent.closed_with(timeout=5) == 4401
        assert time.monotonic() - started < 3


def test_both_parties_chat_with_receipts_and_typing(ws_url: str, chat: Chat) -> None:
    customer, _, mitra_token, session_id = chat.paired()
    with socket(ws_url, customer["access_token"], session_id) as me, socket(ws_url, mitra_token, session_id) as bestie:
        _ok(me)
        _ok(bestie)
        me.send({"type": "typing"})
        typing = bestie.until("typing")
        assert typing["data"] == {"session_id": session_id, "sender_type": "customer"}
        me.send({"type": "message.send", "client_message_id": "c-1", "content": "Halo Bestie"})
        sent = me.until("message.sent")["data"]
        assert sent["content"] == "Halo Bestie"
        assert sent["status"] == "sent"
        assert sent["sender_type"] == "customer"
        assert set(sent) >= {"id", "session_id", "client_message_id", "sender_type", "content", "status", "created_at"}
        received = bestie.until("message.new")["data"]
        assert received["id"] == sent["id"]
        bestie.send({"type": "message.delivered", "message_id": sent["id"]})
        assert me.until("message.status")["data"] == {"message_id": sent["id"], "status": "delivered"}
        bestie.send({"type": "message.read", "up_to_message_id": sent["id"]})
        assert me.until("message.status")["data"] == {"message_id": sent["id"], "status": "read"}
        me.send({"type": "message.send", "client_message_id": "c-1", "content": "Halo Bestie"})  # a retry
        assert me.until("message.sent")["data"]["id"] == sent["id"]
        bestie.send({"type": "message.send", "client_message_id": "m-1", "content": "Hai, cerita aja"})
        assert me.until("message.new")["data"]["content"] == "Hai, cerita aja"
        bestie.send({"type": "ping"})
        assert bestie.until("pong")["type"] == "pong"
        # Invalid frames get an error and the socket stays open.
        me.send({"type": "message.send", "client_message_id": "c-2", "content": ""})
        assert me.until("error")["data"]["code"] == "VALIDATION_ERROR"
        me.send({"type": "no.such.frame"})
        assert me.until("error")["data"]["code"] == "UNKNOWN_TYPE"
        me.ws.send("{broken")
        assert me.until("error")["data"]["code"] == "BAD_FRAME"
        me.ws.send(b"\x00binary")
        assert me.until("error")["data"]["code"] == "TEXT_ONLY"
        me.send({"type": "ping"})
        assert me.until("pong")
    stored = chat.pay.db.fetch_all("SELECT * FROM chat_messages ORDER BY seq")
    assert [r["content"] for r in stored] == [None, None]  # sealed at rest
    opened = [(chat.pay.transcripts.open_row(r), r["status"]) for r in stored]
    assert opened == [("Halo Bestie", "read"), ("Hai, cerita aja", "sent")]


def test_sends_arriving_together_each_get_their_own_outcome_in_order(ws_url: str, chat: Chat) -> None:
    """Frames from many sockets at once are stored in shared batches (runtime/gateway/batching.py, Batches):
    every sender still gets its own replies in its own order, and the other party hears each once."""
    pairs = [chat.paired() for _ in range(5)]
    paused, _, _, paused_id = chat.paired()
    chat.pay.db.execute("UPDATE chat_sessions SET status = 'extending' WHERE id = %(s)s", {"s": paused_id})
    burst = 12
    with ExitStack() as stack:
        senders = [stack.enter_context(socket(ws_url, c["access_token"], sid)) for c, _, _, sid in pairs]
        hearers = [stack.enter_context(socket(ws_url, token, sid)) for _, _, token, sid in pairs]
        blocked = stack.enter_context(socket(ws_url, paused["access_token"], paused_id))
        for client in [*senders, *hearers, blocked]:
            _ok(client)

        def fire(client: Client, tag: str) -> list[dict[str, Any]]:
            for n in range(burst):  # all at once, without waiting for the replies
                client.send({"type": "message.send", "client_message_id": f"{tag}-{n}", "content": f"{tag} {n}"})
            return [client.next() for _ in range(burst)]

        with ThreadPoolExecutor(len(senders) + 1) as pool:
            replies = list(pool.map(fire, [*senders, blocked], [f"c{i}" for i in range(len(senders))] + ["p"]))
        for i, frames in enumerate(replies[:-1]):
            assert [(f["type"], f["data"]["content"]) for f in frames] == [
                ("message.sent", f"c{i} {n}") for n in range(burst)
            ]
            heard = [hearers[i].until("message.new")["data"] for _ in range(burst)]
            assert [h["id"] for h in heard] == [f["data"]["id"] for f in frames]
        assert [(f["type"], f["data"]["code"]) for f in replies[-1]] == [("error", "SESSION_PAUSED")] * burst
        for client in hearers:  # and nothing twice: a ping's pong comes after anything already queued
            before = len(client.seen)
            client.send({"type": "ping"})
            client.until("pong")
            assert "message.new" not in [f["type"] for f in client.seen[before:]]
    stored = chat.pay.db.fetch_one("SELECT count(*) AS n, count(DISTINCT session_id) AS s FROM chat_messages")
    assert stored == {"n": burst * len(senders), "s": len(senders)}


def test_a_batch_stuck_on_a_row_lock_does_not_hold_the_other_senders(ws_url: str, chat: Chat) -> None:
    """One batch in flight at a time is the fast path; a batch that stalls (here the session row is
    locked by another transaction) lets the next one go beside it after STALL_SECONDS. The test
    gateway is one process, so both sockets share its batches."""
    (stuck, _, _, stuck_id), (free, _, _, free_id) = chat.paired(), chat.paired()
    with socket(ws_url, stuck["access_token"], stuck_id) as a, socket(ws_url, free["access_token"], free_id) as b:
        _ok(a)
        _ok(b)
        with psycopg.connect(chat.pay.db.dsn) as holder:
            holder.execute("SELECT 1 FROM chat_sessions WHERE id = %s FOR UPDATE", (stuck_id,))
            a.send({"type": "message.send", "client_message_id": "a-1", "content": "tertahan"})
            time.sleep(0.3)  # a's batch now waits for the row lock
            started = time.monotonic()
            b.send({"type": "message.send", "client_message_id": "b-1", "content": "lewat"})
            assert b.until("message.sent", timeout=3)["data"]["content"] == "lewat"
            assert time.monotonic() - started < 1.0
            holder.rollback()
        assert a.until("message.sent")["data"]["content"] == "tertahan"  # once the lock is gone


def test_a_general_socket_hears_pairing_and_a_session_socket_only_its_session(ws_url: str, chat: Chat) -> None:
    mitra, token = chat.mitra("Ayu")
    customer = chat.customer()
    with socket(ws_url, token) as home, socket(ws_url, customer["access_token"]) as waiting:
        _ok(home)
        _ok(waiting)
        session_id = chat.session_of(chat.pay_for(customer))
        request = home.until("pairing.request")["data"]
        assert request["session_id"] == session_id
        assert request["customer_call_name"] == "Pelanggan"
        chat.accept(token, session_id)
        paired = waiting.until("session.paired")["data"]
        assert paired["session_id"] == session_id
        assert paired["mitra_name"] == "Ayu"
        with socket(ws_url, customer["access_token"], session_id) as in_chat:
            _ok(in_chat)
            chat.app.simulate_post(
                f"/api/shared/chat/{session_id}/messages",
                headers=bearer(token),
                json={"client_message_id": "x", "content": "Hi"},
            )
            assert in_chat.until("message.new")["data"]["content"] == "Hi"
            assert waiting.until("message.new")["data"]["content"] == "Hi"  # the general channel hears it too
    assert mitra["id"]


def test_a_reroute_closes_the_previous_mitras_session_socket_with_4403(ws_url: str, chat: Chat) -> None:
    """lib/chat/lifecycle.reroute tells the gateways so (lib/chat/events.DROP_SESSION): the previous
    mitra's socket joined to the session closes with 4403 and hears nothing more; its general
    socket hears session.rerouted {session_id, mitra: null} as docs/chat.md has it and stays open,
    and no app ever hears the gateway's own event."""
    customer, _, first_token, session_id = chat.paired()
    second, second_token = chat.mitra("Kedua")
    with (
        socket(ws_url, first_token, session_id) as joined,
        socket(ws_url, first_token) as home,
        socket(ws_url, customer["access_token"], session_id) as me,
    ):
        for client in (joined, home, me):
            _ok(client)
        moved = chat.cc.simulate_post(
            f"/internal/sessions/{session_id}/reroute",
            headers=bearer(chat.admin()),
            json={"mitra_id": str(second["id"])},
        )
        assert moved.status_code == 200, moved.text
        assert home.until("session.rerouted")["data"] == {"session_id": session_id, "mitra": None}
        assert me.until("session.rerouted")["data"]["mitra"]["id"] == str(second["id"])
        frames, code = close_code_after(joined)
        assert code == 4403
        assert frames == []
        home.send({"type": "ping"})
        assert home.until("pong")["type"] == "pong"
        assert not [f for c in (home, me) for f in c.seen if f["type"].startswith("gateway.")]
    with socket(ws_url, first_token, session_id) as again:
        assert again.closed_with() == 4403
    with socket(ws_url, second_token, session_id) as taken_over:
        assert _ok(taken_over)["data"]["session_id"] == session_id


def test_two_gateway_processes_carry_a_chat_between_them(settings: Settings, chat: Chat) -> None:
    customer, _, mitra_token, session_id = chat.paired()
    with (
        gateway(settings) as (first, _),
        gateway(settings) as (second, _),
        socket(first, customer["access_token"], session_id) as me,
        socket(second, mitra_token, session_id) as bestie,
    ):
        _ok(me)
        _ok(bestie)
        me.send({"type": "message.send", "client_message_id": "c-1", "content": "dari gateway satu"})
        assert bestie.until("message.new")["data"]["content"] == "dari gateway satu"
        bestie.send({"type": "message.send", "client_message_id": "m-1", "content": "dari gateway dua"})
        assert me.until("message.new")["data"]["content"] == "dari gateway dua"


def test_logout_and_deactivation_close_live_sockets(ws_url: str, chat: Chat) -> None:
    customer, mitra, mitra_token, session_id = chat.paired()
    with socket(ws_url, customer["access_token"]) as me, socket(ws_url, mitra_token, session_id) as bestie:
        _ok(me)
        _ok(bestie)
        started = time.monotonic()
        chat.app.simulate_post("/api/shared/auth/logout", headers=bearer(customer["access_token"]))
        assert me.closed_with() == 4401
        assert time.monotonic() - started < 2
        admin = bearer(chat.admin())
        chat.cc.simulate_patch(f"/internal/mitras/{mitra['id']}/status", headers=admin, json={"is_active": False})
        assert bestie.closed_with() == 4401
    with socket(ws_url, customer["access_token"]) as again:
        assert again.closed_with() == 4401  # a revoked session cannot come back


def test_sigterm_closes_every_socket_with_1001(settings: Settings, chat: Chat) -> None:
    customer, mitra, mitra_token, session_id = chat.paired()
    with (
        gateway(settings) as (url, proc),
        socket(url, customer["access_token"]) as one,
        socket(url, mitra_token, session_id) as two,
    ):
        _ok(one)
        _ok(two)
        valkey = redis.Redis.from_url(settings.redis_url)
        presence = [sockets.key("customer", customer["user"]["id"]), sockets.key("mitra", str(mitra["id"]))]
        assert all(valkey.zcard(key) == 1 for key in presence)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert one.closed_with() == 1001
        assert two.closed_with() == 1001
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, out
        assert time.monotonic() - started < 10  # not the whole graceful timeout
        # The sockets' presence went with them (pushes resume at once, not when it lapses), and
        # the stop left no traceback (the presence work once raced the thread pool's shutdown).
        assert [valkey.zcard(key) for key in presence] == [0, 0]
        assert "Traceback" not in out, out


def test_a_socket_arriving_while_the_gateway_stops_is_told_1001(services: Services) -> None:
    """Accepted and closed with 1001, which apps take as "reconnect elsewhere"; refusing the
    handshake (HTTP 403, as ASGI reads a close before accept) would read to them as a failure."""

    class Arriving:
        def __init__(self) -> None:
            self.seen: list[Any] = []

        async def accept(self) -> None:
            self.seen.append("accept")

        async def close(self, code: int) -> None:
            self.seen.append(code)

    gateway = Gateway(services, {})
    gateway.stopping = True
    ws = Arriving()
    try:
        asyncio.run(gateway.serve(ws))  # type: ignore[arg-type]
    finally:
        gateway.pool.shutdown()
    assert ws.seen == ["accept", 1001]


def test_a_frame_over_the_limit_closes_with_1009(ws_url: str, chat: Chat) -> None:
    customer, _, _, session_id = chat.paired()
    with socket(ws_url, customer["access_token"], session_id) as me:
        _ok(me)
        me.send({"type": "message.send", "client_message_id": "big", "content": "x" * 40_000})
        assert me.closed_with() == 1009


def test_a_slow_reader_is_dropped_and_the_others_are_not_slowed(settings: Settings, chat: Chat) -> None:
    customer, _, _mitra_token, session_id = chat.paired()
    other_customer, _, other_token, other_session = chat.paired()
    with (
        gateway(settings) as (url, _),
        connect(url, open_timeout=5, max_queue=1, compression=None) as slow,
        socket(url, other_token, other_session) as fine,
    ):
        slow.send(json.dumps({"type": "auth", "token": customer["access_token"], "session_id": session_id}))
        _ok(fine)
        # 20 MB of events for the slow socket, which reads none of them: more than the kernel's
        # socket buffers hold, so the gateway's own bounded outbox fills up (uncompressed: the
        # padding would deflate to almost nothing).
        big = {"session_id": session_id, "pad": "x" * 8000}
        slow_customer = [ev.customer(customer["user"]["id"])]
        chat.pay.chat_events.publish_each([(slow_customer, "message.new", big)] * 2500)
        started = time.monotonic()
        chat.app.simulate_post(
            f"/api/shared/chat/{other_session}/messages",
            headers=bearer(other_customer["access_token"]),
            json={"client_message_id": "x", "content": "tetap lancar"},
        )
        assert fine.until("message.new")["data"]["content"] == "tetap lancar"
        assert time.monotonic() - started < 2
        closed = Client(slow).closed_with(timeout=10)
        assert closed == 4008


def test_a_gateway_that_loses_valkey_keeps_its_sockets_and_asks_for_a_resync(
    pay_settings: Settings, throwaway_valkey, make_mitra, anonymous, cc_login
) -> None:
    private = replace(pay_settings, redis_url=throwaway_valkey.url)
    svc = build_services(private, application_name="valkey-loss")
    local = Chat(svc, make_mitra, anonymous, cc_login)
    try:
        customer, _, mitra_token, session_id = local.paired()
        with (
            gateway(private) as (url, _),
            socket(url, customer["access_token"], session_id) as me,
            socket(url, mitra_token, session_id) as bestie,
        ):
            _ok(me)
            _ok(bestie)
            throwaway_valkey.stop()
            me.send({"type": "ping"})
            assert me.until("pong")  # still served
            me.send({"type": "message.send", "client_message_id": "during", "content": "waktu mati"})
            assert me.until("message.sent")["data"]["content"] == "waktu mati"  # stored; the event is lost
            throwaway_valkey.start()
            assert me.until("resync", timeout=15)["data"]["reason"]
            assert bestie.until("resync", timeout=15)
            me.send({"type": "message.send", "client_message_id": "after", "content": "sudah hidup"})
            assert bestie.until("message.new", timeout=10)["data"]["content"] == "sudah hidup"
    finally:
        local.heard.close()
        svc.close()


def test_a_push_is_sent_exactly_when_no_socket_carries_the_event(
    pay_settings: Settings, tmp_path, make_mitra, anonymous, cc_login
) -> None:
    fcm = FakeFcm()
    with fcm.running():
        configured = replace(
            pay_settings, firebase_service_account_path=fcm.service_account(tmp_path / "sa.json"), fcm_base_url=fcm.url
        )
        svc = build_services(configured, application_name="push-gateway")
        local = Chat(svc, make_mitra, anonymous, cc_login)
        try:
            customer, _, mitra_token, session_id = local.paired()
            local.app.simulate_put(
                "/api/shared/devices/fcm-token",
                headers=bearer(customer["access_token"]),
                json={"token": "customer-phone", "platform": "android"},
            )
            svc.notifier.drain()
            fcm.sent.clear()

            def say(text: str) -> None:
                local.app.simulate_post(
                    f"/api/shared/chat/{session_id}/messages",
                    headers=bearer(mitra_token),
                    json={"client_message_id": text, "content": text},
                )
                assert svc.notifier.drain()

            with gateway(pay_settings) as (url, _):
                with socket(url, customer["access_token"], session_id) as me:
                    _ok(me)
                    say("while connected")
                    assert me.until("message.new")["data"]["content"] == "while connected"
                    assert fcm.sent == []  # the socket carried it: no push
                deadline = time.monotonic() + 5
                while local.pay.valkey.zcard(f"ws:customer:{customer['user']['id']}") and time.monotonic() < deadline:
                    time.sleep(0.05)  # the gateway forgets the closed socket
                say("while away")
                assert [(m["token"], m["data"]["type"]) for m in fcm.sent] == [("customer-phone", "message")]
        finally:
            local.heard.close()
            svc.close()


def test_the_gateways_metrics_port_counts_its_sockets(settings: Settings, chat: Chat) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def connected(url: str) -> float:
        text = requests.get(url, timeout=5).text
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "halobestie_sockets_connected" and s.labels.get("user_type") == "customer"
        )

    metrics_port = free_port()
    customer = chat.customer()
    with gateway(settings, METRICS_PORT=str(metrics_port), WEB_CONCURRENCY="2") as (url, _):
        scrape = f"http://127.0.0.1:{metrics_port}/metrics"
        with socket(url, customer["access_token"]) as one, socket(url, customer["access_token"]) as two:
            _ok(one)
            _ok(two)
            assert connected(scrape) == 2  # summed over the gateway's worker processes
        deadline = time.monotonic() + 5
        while connected(scrape) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert connected(scrape) == 0
