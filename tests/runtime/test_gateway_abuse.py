"""Hostile input against the real gateway process: every frame, the auth frame too, goes through
lib/inputs.py, so junk closes an unauthenticated socket with 4401 and is answered by an `error`
frame after auth; nothing closes a socket with 1011 or logs a traceback; a poisoned frame fails
alone while the honest frames sharing its batch are stored; a revocation that lands while a socket
is being authenticated still closes it."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from lib.chat.messages import Outgoing, send_many
from lib.config.env import Settings
from lib.errors import ApiError, ServiceUnavailable, ValidationFailed
from lib.frames import FrameCtx
from lib.principal import Principal
from lib.services import Services
from runtime.gateway import FAILED, Batches, Gateway
from tests.chatflow import Chat
from tests.conftest import bearer
from tests.wsclient import Client, gateway, socket

DEEP = "[" * 1100
SURROGATE = "\ud800"  # json.dumps writes it as the escape "\\ud800", as an attacker would send it


@contextmanager
def watched_gateway(settings: Settings, **env: str) -> Iterator[tuple[str, list[str]]]:
    """The gateway process with its log read while it writes (a full pipe would stall it); yields
    (ws url, log lines so far). The process is stopped here, so every line is in by the end."""
    lines: list[str] = []
    with gateway(settings, **env) as (url, proc):
        assert proc.stdout is not None
        out = proc.stdout

        def read() -> None:
            for line in out:
                lines.append(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            yield url, lines
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            reader.join(timeout=10)


def no_traceback(lines: list[str]) -> None:
    text = "".join(lines)
    assert "Traceback" not in text, text[-4000:]


def close_code_after(client: Client, timeout: float = 5.0) -> tuple[list[dict[str, Any]], int | None]:
    """Every frame the socket got until it closed, and the close code (None: still open)."""
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            frames.append(json.loads(client.ws.recv(timeout=max(0.05, deadline - time.monotonic()))))
    except ConnectionClosed as closed:
        return frames, closed.rcvd.code if closed.rcvd else None
    except TimeoutError:
        pass
    return frames, None


def _ok(client: Client) -> None:
    """The socket's first frame is auth.ok."""
    frame = client.next()
    assert frame["type"] == "auth.ok", frame


def test_a_junk_auth_frame_closes_with_4401_never_1011(settings: Settings, chat: Chat) -> None:
    customer, _, _, session_id = chat.paired()
    token = customer["access_token"]
    junk: list[str] = [
        DEEP,
        '{"a":' * 1100,
        json.dumps({"type": "auth", "token": SURROGATE}),
        json.dumps({"type": "auth", "token": f"{token}\x00"}),
        json.dumps({"type": "auth", "token": token, "session_id": SURROGATE}),
        json.dumps({"type": "auth", "token": token, "session_id": session_id, SURROGATE: 1}),
        json.dumps({"type": "auth", "token": token, "n": 10**30}),
        '{"type": "auth", "token": "' + token + '", "n": NaN}',
        '{"type": "auth", "token": "' + token + '", "n": 1e999}',
        json.dumps({"type": SURROGATE, "token": token}),
        '{"type": "auth", "token": "' + token + '", "n": ' + "9" * 5000 + "}",
    ]
    with watched_gateway(settings) as (url, log):
        for first in junk:
            with socket(url, None, first=first) as refused:
                assert refused.closed_with() == 4401, first[:80]
        with connect(url, open_timeout=5) as raw:
            raw.send(b"\x00\x01binary")
            assert Client(raw).closed_with() == 4401
        # A session id that is no UUID, of any JSON type: not a participant.
        for odd in ([session_id], {"id": session_id}, 12, "x" * 5000):
            with socket(url, None, first={"type": "auth", "token": token, "session_id": odd}) as refused:
                assert refused.closed_with() == 4403, odd
        with socket(url, token, session_id) as fine:  # and the honest one still gets in
            _ok(fine)
    no_traceback(log)


def test_junk_after_auth_is_answered_and_the_socket_stays_open(settings: Settings, chat: Chat) -> None:
    customer, _, mitra_token, session_id = chat.paired()
    with (
        watched_gateway(settings) as (url, log),
        socket(url, customer["access_token"], session_id) as me,
        socket(url, mitra_token, session_id) as bestie,
    ):
        _ok(me)
        _ok(bestie)

        def answer(text: str) -> dict[str, Any]:
            me.ws.send(text)
            data: dict[str, Any] = me.until("error")["data"]
            return data

        assert answer(DEEP)["code"] == "BAD_FRAME"
        assert answer('{"a":' * 40 + "1" + "}" * 40)["code"] == "BAD_FRAME"  # deeper than 32 levels
        nul = answer(json.dumps({"type": "message.send", "client_message_id": "n-1", "content": "a\x00b"}))
        assert nul["code"] == "VALIDATION_ERROR"
        assert nul["type"] == "message.send"
        assert "content" in nul["fields"]
        lone = answer(json.dumps({"type": "message.send", "client_message_id": SURROGATE, "content": "hai"}))
        assert lone["code"] == "VALIDATION_ERROR"
        assert lone["type"] == "message.send"
        echoed = answer(json.dumps({"type": f"x{SURROGATE}y"}))
        assert echoed["code"] == "VALIDATION_ERROR"
        assert echoed["type"] == "x?y"  # only through safe_name
        big = answer(json.dumps({"type": "message.send", "client_message_id": "b", "content": "hai", "n": 2**64}))
        assert big["code"] == "VALIDATION_ERROR"
        assert answer('{"type": "ping", "n": NaN}')["code"] == "VALIDATION_ERROR"
        assert answer(json.dumps({"type": ["ping"]}))["code"] == "UNKNOWN_TYPE"
        assert answer(json.dumps({"type": "message.send", "client_message_id": "", "content": ""}))["fields"]
        assert answer(json.dumps({"type": "message.send", "client_message_id": "w", "content": "   "}))["code"] == (
            "VALIDATION_ERROR"
        )
        assert answer(json.dumps({"type": "message.delivered", "message_id": "not-a-uuid"}))["code"] == (
            "VALIDATION_ERROR"
        )
        me.send({"type": "message.send", "client_message_id": "ok-1", "content": "masih di sini"})
        assert me.until("message.sent")["data"]["content"] == "masih di sini"
        assert bestie.until("message.new")["data"]["content"] == "masih di sini"
        me.send({"type": "ping"})
        assert me.until("pong")
    stored = chat.pay.db.fetch_all("SELECT client_message_id FROM chat_messages")
    assert [r["client_message_id"] for r in stored] == ["ok-1"]  # the NUL content REST refuses is not stored
    no_traceback(log)


def test_honest_pairs_keep_every_message_beside_a_hostile_sender(settings: Settings, chat: Chat) -> None:
    """Frames from many sockets are stored in shared batches: a hostile participant's poisoned
    frames are refused alone, and every honest message is stored, acknowledged and heard."""
    pairs = [chat.paired() for _ in range(3)]
    hostile, _, _, hostile_session = chat.paired()
    burst = 10
    # One short of JUNK_LIMIT: the tenth unstorable frame within seconds would close the socket.
    poison = [{"type": "message.send", "client_message_id": f"h-{n}", "content": f"racun\x00{n}"} for n in range(5)] + [
        {"type": "message.send", "client_message_id": f"{SURROGATE}{n}", "content": "racun"} for n in range(4)
    ]
    with ExitStack() as stack:
        url, log = stack.enter_context(watched_gateway(settings))
        senders = [stack.enter_context(socket(url, c["access_token"], sid)) for c, _, _, sid in pairs]
        hearers = [stack.enter_context(socket(url, token, sid)) for _, _, token, sid in pairs]
        attacker = stack.enter_context(socket(url, hostile["access_token"], hostile_session))
        for client in [*senders, *hearers, attacker]:
            _ok(client)

        def honest(client: Client, tag: str) -> list[dict[str, Any]]:
            for n in range(burst):
                client.send({"type": "message.send", "client_message_id": f"{tag}-{n}", "content": f"{tag} {n}"})
            return [client.next() for _ in range(burst)]

        def attack() -> list[dict[str, Any]]:
            for frame in poison:
                attacker.send(frame)
            return [attacker.next() for _ in poison]

        with ThreadPoolExecutor(len(senders) + 1) as pool:
            hostile_replies = pool.submit(attack)
            replies = list(pool.map(honest, senders, [f"c{i}" for i in range(len(senders))]))
            refused = hostile_replies.result()
        for i, frames in enumerate(replies):
            assert [(f["type"], f["data"]["content"]) for f in frames] == [
                ("message.sent", f"c{i} {n}") for n in range(burst)
            ]
            heard = [hearers[i].until("message.new")["data"]["id"] for _ in range(burst)]
            assert heard == [f["data"]["id"] for f in frames]
        assert {(f["type"], f["data"]["code"]) for f in refused} == {("error", "VALIDATION_ERROR")}
    rows = chat.pay.db.fetch_all("SELECT session_id FROM chat_messages")
    assert len(rows) == burst * len(pairs)
    assert str(hostile_session) not in {str(r["session_id"]) for r in rows}
    no_traceback(log)


def test_a_revocation_between_authentication_and_registration_still_closes_the_socket(
    settings: Settings, chat: Chat
) -> None:
    """The participant check is the gateway's only wait between checking the token and registering
    the socket; the session table is locked so the revocation lands exactly there."""
    customer, _, _, session_id = chat.paired()
    token = customer["access_token"]
    with gateway(settings) as (url, _), psycopg.connect(chat.pay.db.dsn) as holder:
        holder.execute("LOCK TABLE chat_sessions IN ACCESS EXCLUSIVE MODE")
        with socket(url, token, session_id) as joining:
            waiting = 0
            for _ in range(100):  # until the gateway's participant check waits on the lock
                row = chat.pay.db.fetch_one(
                    "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND application_name = 'halobestie-realtime'"
                )
                waiting = row["n"] if row else 0
                if waiting:
                    break
                time.sleep(0.05)
            assert waiting == 1
            out = chat.app.simulate_post("/api/shared/auth/logout", headers=bearer(token))
            assert out.status_code in (200, 204), out.text
            with socket(url, token) as probe:  # closed once this gateway knows of the revocation
                assert probe.closed_with() == 4401
            holder.rollback()  # the participant check goes on; the socket registers now
            frames, code = close_code_after(joining)
            assert code == 4401
            assert "auth.ok" not in [f["type"] for f in frames]


def test_send_many_judges_each_item_alone(chat: Chat) -> None:
    """lib/chat/messages.send_many, which REST and the gateway share: unstorable text, bad ids and a
    value only the database refuses (here a sender type its CHECK forbids, which fails the shared
    statement) each fail alone; the honest items are stored."""
    (c1, _, _, s1), (_, m2, _, s2) = chat.paired(), chat.paired()
    honest = Principal("customer", c1["user"]["id"], "x")
    odd = Principal("robot", str(m2["id"]), "x")  # joins as the mitra, then breaks sender_type's CHECK
    s = chat.pay
    items = [
        Outgoing(honest, s1, "a", "satu"),
        Outgoing(honest, s1, "b", "dua\x00"),
        Outgoing(honest, s1, f"c{SURROGATE}", "tiga"),
        Outgoing(honest, s1, "d", f"empat{SURROGATE}"),
        Outgoing(honest, "", "e", "lima"),
        Outgoing(honest, s1, "f", "x" * 4001),
        Outgoing(odd, s2, "g", "tujuh"),
        Outgoing(honest, s1, "h", "delapan"),
    ]
    out = send_many(s.db, s.chat_events, s.transcripts, items)
    kinds = [o[0]["content"] if isinstance(o, tuple) else o.code for o in out]
    assert kinds == [
        "satu",
        "VALIDATION_ERROR",
        "VALIDATION_ERROR",
        "VALIDATION_ERROR",
        "NOT_FOUND",
        "VALIDATION_ERROR",
        "VALIDATION_ERROR",
        "delapan",
    ]
    rows = s.db.fetch_all("SELECT client_message_id FROM chat_messages ORDER BY seq")
    assert [r["client_message_id"] for r in rows] == ["a", "h"]


def _run_batches(services: Services, handle: Any, bodies: list[dict[str, Any]]) -> list[Any]:
    gateway = Gateway(services, {})
    batches = Batches(gateway, "test.frame", handle)
    who = Principal("customer", "00000000-0000-0000-0000-000000000001", "x")

    async def main() -> list[Any]:
        gateway.loop = asyncio.get_running_loop()
        return list(await asyncio.gather(*(batches.run(FrameCtx(services, who, None, b)) for b in bodies)))

    try:
        return asyncio.run(main())
    finally:
        gateway.pool.shutdown()


def test_a_batch_that_breaks_on_one_frame_runs_each_frame_alone(services: Services) -> None:
    """Batches (runtime/gateway/batching.py): frames that arrive together share a batch; one poisoned frame
    breaks that batch, so each of its frames is run again alone and only the poisoned one fails."""
    seen: list[int] = []

    def handle(ctxs: list[FrameCtx]) -> list[Any]:
        seen.append(len(ctxs))
        if any(c.body["poison"] for c in ctxs):
            if len(ctxs) == 1 and ctxs[0].body["poison"] == "refused":
                raise ValidationFailed({"x": ["no"]})
            raise RuntimeError("poisoned")
        return [{"type": "ok", "data": c.body["n"]} for c in ctxs]

    bodies = [{"n": n, "poison": {3: "broken", 4: "refused"}.get(n)} for n in range(6)]
    outcomes = _run_batches(services, handle, bodies)
    assert outcomes[3] is FAILED
    assert isinstance(outcomes[4], ApiError)
    assert outcomes[4].code == "VALIDATION_ERROR"
    assert [o["data"] for i, o in enumerate(outcomes) if i not in (3, 4)] == [0, 1, 2, 5]
    assert seen == [6, 1, 1, 1, 1, 1, 1]  # together, then each alone

    def away(ctxs: list[FrameCtx]) -> list[Any]:  # a reason every frame shares: answered as it is
        seen.append(len(ctxs))
        raise ServiceUnavailable("Database unavailable")

    seen.clear()
    shared = _run_batches(services, away, [{"n": n} for n in range(4)])
    assert {o.code for o in shared} == {"SERVICE_UNAVAILABLE"}
    assert seen == [4]
