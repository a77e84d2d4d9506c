"""Two replicas of every process (public, internal, worker, realtime) on one PostgreSQL and one
Valkey, a whole chat driven across them: sign-in, payment, webhook, pairing, chat, extension,
close. Consecutive requests go to alternating replicas, the two parties sit on different gateways.
Every deadline fires once, no event is lost for a connected socket, no session or payment doubles."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from itertools import cycle
from typing import Any

import requests

from lib.config.env import Settings
from tests.chatflow import Chat
from tests.conftest import bearer
from tests.fakes import FakeXendit
from tests.helpers import free_port, runtime_process
from tests.payflow import TOKEN, WEBHOOK, paid_body, tier_of, xendit_env
from tests.wsclient import Client, gateway, socket


class Replicas:
    """Base URLs of each listener's two replicas; `next(kind)` alternates between them."""

    def __init__(self, public: list[str], internal: list[str], realtime: list[str]) -> None:
        self.public, self.internal, self.realtime = public, internal, realtime
        self._public, self._internal = cycle(public), cycle(internal)
        self.used: Counter[str] = Counter()

    def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        base = next(self._internal if path.startswith("/internal/") else self._public)
        self.used[base] += 1
        headers = kw.pop("headers", {}) | (bearer(token) if token else {})
        return requests.request(method, base + path, headers=headers, timeout=10, **kw)


@contextmanager
def two_of_each(settings: Settings, xendit: FakeXendit) -> Iterator[Replicas]:
    env = xendit_env(settings, xendit)
    with ExitStack() as stack:
        public: list[str] = []
        internal: list[str] = []
        realtime: list[str] = []
        for surface, urls in (("public", public), ("internal", internal)):
            for _ in range(2):
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                stack.enter_context(
                    runtime_process(["serve", surface, "--bind", f"127.0.0.1:{port}"], env, url + "/health")
                )
                urls.append(url)
        for _ in range(2):
            ws_url, _ = stack.enter_context(gateway(settings, **{k: v for k, v in env.items() if k != "PATH"}))
            realtime.append(ws_url)
        for _ in range(2):
            stack.enter_context(runtime_process(["worker"], env, None))
        yield Replicas(public, internal, realtime)


def callback(r: Replicas, payment: dict[str, Any]) -> requests.Response:
    """Xendit's PAID callback for the payment, to the next public replica."""
    headers = {"x-callback-token": TOKEN, "Content-Type": "application/json"}
    return r.call("POST", WEBHOOK, data=json.dumps(paid_body(payment)), headers=headers)


def _drain(client: Client, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            client.next(max(0.05, deadline - time.monotonic()))
    except TimeoutError:
        pass


def _types(client: Client) -> Counter[str]:
    return Counter(frame["type"] for frame in client.seen)


def test_a_whole_chat_across_two_replicas_of_every_process(settings: Settings, xendit: FakeXendit, chat: Chat) -> None:
    db = chat.pay.db
    mitra, mitra_token = chat.mitra("Ayu", online=False)  # the account; going online is over HTTP below
    with two_of_each(settings, xendit) as r:
        # Sign-in and presence.
        signed = r.call("POST", "/api/shared/auth/anonymous", json={"display_name": "Rani"})
        assert signed.status_code == 201, signed.text
        customer = signed.json()["data"]
        me = customer["access_token"]
        assert r.call("POST", "/api/mitra/status/online", mitra_token).status_code == 200
        assert r.call("POST", "/api/mitra/status/heartbeat", mitra_token).status_code in (200, 204)

        with (
            socket(r.realtime[0], mitra_token) as bestie,
            socket(r.realtime[1], me) as rani,
        ):
            assert bestie.next()["type"] == "auth.ok"
            assert rani.next()["type"] == "auth.ok"

            # Payment on one replica, Xendit's callback on the other: the search starts.
            created = r.call(
                "POST", "/api/client/payment-requests", me, json={"mode": "chat", "tier_id": tier_of(chat.pay, 15)}
            )
            assert created.status_code == 201, created.text
            payment = created.json()["data"]
            paid = callback(r, payment)
            assert paid.json() == {"ok": True, "confirmed": True}, paid.text
            session_id = bestie.until("pairing.request", timeout=10)["data"]["session_id"]
            # Xendit retries a callback: the other replica answers it as a duplicate.
            again = callback(r, payment)
            assert again.json() == {"ok": True, "duplicate": True}

            # Pairing: the accept on a replica, the news on the customer's gateway.
            accepted = r.call("POST", f"/api/mitra/chat-requests/{session_id}/accept", mitra_token)
            assert accepted.status_code == 200, accepted.text
            assert rani.until("session.paired", timeout=10)["data"]["session_id"] == session_id

            # In the chat, each party on the other gateway than before.
            with (
                socket(r.realtime[0], me, session_id) as rani_chat,
                socket(r.realtime[1], mitra_token, session_id) as bestie_chat,
            ):
                assert rani_chat.next()["type"] == "auth.ok"
                assert bestie_chat.next()["type"] == "auth.ok"
                # Chat both ways between the gateways, and over REST on the public replicas.
                rani_chat.send({"type": "message.send", "client_message_id": "c-1", "content": "aku capek banget"})
                assert bestie_chat.until("message.new", timeout=10)["data"]["content"] == "aku capek banget"
                bestie_chat.send(
                    {"type": "message.send", "client_message_id": "m-1", "content": "cerita aja, aku dengerin"}
                )
                assert rani_chat.until("message.new", timeout=10)["data"]["content"] == "cerita aja, aku dengerin"
                for n in range(4):
                    sent = r.call(
                        "POST",
                        f"/api/shared/chat/{session_id}/messages",
                        me,
                        json={"client_message_id": f"r-{n}", "content": f"pesan {n}"},
                    )
                    assert sent.status_code == 201, sent.text

                # An extension: asked on one replica, approved on the other, paid through the webhook.
                ext = r.call(
                    "POST", f"/api/client/chat/{session_id}/extensions", me, json={"tier_id": tier_of(chat.pay, 15)}
                )
                assert ext.status_code == 201, ext.text
                extension_id = ext.json()["data"]["id"]
                assert bestie_chat.until("extension.requested", timeout=10)["data"]["id"] == extension_id
                approved = r.call(
                    "POST", f"/api/mitra/extensions/{extension_id}/respond", mitra_token, json={"decision": "approve"}
                )
                assert approved.status_code == 200, approved.text
                invoice = r.call(
                    "GET", f"/api/client/payment-requests/{approved.json()['data']['payment_request_id']}", me
                ).json()["data"]
                paid = callback(r, invoice)
                assert paid.json() == {"ok": True, "confirmed": True}
                assert rani_chat.until("session.extended", timeout=10)["data"]["session_id"] == session_id

                # The time is up: two workers race for the deadline, it fires once.
                db.execute(
                    "UPDATE chat_sessions SET expires_at = now() - interval '1 second' WHERE id = %(s)s",
                    {"s": session_id},
                )
                assert rani_chat.until("session.closing", timeout=10)["data"]["session_id"] == session_id
                bye = r.call(
                    "POST", f"/api/shared/chat/{session_id}/closing-message", me, json={"content": "makasih ya"}
                )
                assert bye.status_code in (200, 201), bye.text
                # The mitra leaves no goodbye: the grace runs out, and again one worker completes it.
                db.execute(
                    "UPDATE chat_sessions SET closing_expires_at = now() - interval '1 second' WHERE id = %(s)s",
                    {"s": session_id},
                )
                assert bestie_chat.until("session.completed", timeout=10)["data"]["session_id"] == session_id
                for client in (rani, bestie, rani_chat, bestie_chat):
                    _drain(client, 1.0)

        # No event lost, none twice, on either gateway.
        customer_heard, bestie_heard = _types(rani_chat), _types(bestie_chat)
        for event in ("session.extended", "session.closing", "session.completed"):
            assert customer_heard[event] == 1, (event, customer_heard)
        for event in ("extension.requested", "session.closing", "session.completed"):
            assert bestie_heard[event] == 1, (event, bestie_heard)
        # Its own messages come back as message.sent, the other party's as message.new: none lost.
        # The Bestie: 1 over the gateway, 4 over REST and the goodbye.
        assert customer_heard["message.new"] == 1, (customer_heard, bestie_heard)
        assert bestie_heard["message.new"] == 6, (customer_heard, bestie_heard)
        assert _types(bestie)["pairing.request"] == 1
        assert _types(rani)["session.paired"] == 1
        # The control center sees one session on either internal replica.
        admin = chat.admin()
        for _ in range(2):
            listed = r.call("GET", "/internal/sessions", admin).json()["data"]["items"]
            assert [s["id"] for s in listed] == [session_id]
            assert listed[0]["status"] == "completed"
        # Every replica of the REST listeners took part.
        assert all(r.used[url] >= 1 for url in r.public + r.internal), r.used

    # Nothing doubled in the database.
    assert db.fetch_all("SELECT status, ended_by FROM chat_sessions") == [
        {"status": "completed", "ended_by": "system_auto_close"}
    ]
    payments = db.fetch_all("SELECT status FROM payment_requests ORDER BY created_at")
    assert [p["status"] for p in payments] == ["consumed", "consumed"]
    assert db.fetch_one("SELECT count(*) AS n FROM chat_messages") == {"n": 7}  # 6 messages and 1 goodbye
    assert db.fetch_one("SELECT status FROM session_extensions") == {"status": "paid"}
    assert mitra["id"]
