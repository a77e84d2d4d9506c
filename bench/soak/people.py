"""Customers and mitras as the apps drive them: sign in, heartbeat, pay (with Xendit's duplicated, late
and out-of-order callbacks), pair (blast, targeted, fallback), chat with receipts and typing,
extensions, early ends, goodbyes, going offline."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

import requests

from bench.soak.apps import App, Crowd, Http, Record, Socket, clock, waited
from bench.soak.cluster import WEBHOOK_TOKEN, Cluster
from tests.fakes import InvoiceNotPayable

WEBHOOK = "/api/shared/payment/webhooks/xendit"
# How Xendit delivers a PAID callback this time (its documented habits), by weight.
CALLBACK_STYLES = {"once": 5, "duplicated": 2, "late": 2, "settled first": 1, "concurrent": 1}
# A blast reaches every available mitra and a few look at their phone in time: about this many
# answer each one (a race for the accept all the same). When every mitra answered every blast, 300
# customers made ~85 accept calls and as many harness threads per purchase, and the harness, not
# the product, set the pace (load average 400, 61 chats open of 300).
BLAST_RACERS = 4
STATUS_POLL_SECONDS = 30.0  # a chat screen re-reads the session's status now and then, and whenever its socket is down


class World:
    """What every simulated person shares: the cluster, the record, the clock of the run."""

    def __init__(
        self, cluster: Cluster, crowd: Crowd, record: Record, seed: int, stop_new_at: float, tier_id: str, drain: float
    ) -> None:
        self.cluster, self.record, self.stop_new_at, self.tier_id = cluster, record, stop_new_at, tier_id
        self.crowd = crowd
        self.drain = drain  # seconds after stop_new_at for the last chats (and their extensions) to end
        self.seed = seed
        self.mitras: list[Mitra] = []
        self.customers: list[Customer] = []
        self.sessions: set[str] = set()

    def app(self, who: str, user_type: str) -> App:
        return App(self.crowd, self.record, who, user_type, self.cluster.public, self.cluster.realtime)

    async def callback(self, who: str, invoice: dict[str, Any], rng: random.Random) -> None:
        """Xendit tells us the invoice was paid, in one of its habits; a 5xx or no answer is sent again."""
        style = rng.choices(list(CALLBACK_STYLES), list(CALLBACK_STYLES.values()))[0]
        self.record.count(f"callbacks {style}")
        body = {**invoice, "status": "PAID"}
        if style == "settled first":
            await self._post(who, {**invoice, "status": "SETTLED"})
        if style == "late":
            await asyncio.sleep(rng.uniform(3, 10))
        if style == "concurrent":
            self.crowd.spawn(self._post(who, body))
        await self._post(who, body)
        if style == "duplicated":
            await asyncio.sleep(rng.uniform(0, 2))
            await self._post(who, body)

    async def _post(self, who: str, body: dict[str, Any]) -> None:
        assert self.crowd.client is not None
        http = Http(self.record, f"xendit>{who}", self.cluster.public, self.crowd.client)
        r = await http.call("POST", WEBHOOK, body, {"x-callback-token": WEBHOOK_TOKEN})
        if r is None or r.status_code != 200:
            self.record.log(
                who, f"callback for {body['external_id']} unanswered ({r.status_code if r is not None else None})"
            )

    async def pay(self, who: str, request_id: str, rng: random.Random) -> bool:
        """The customer pays the request's invoice at Xendit's checkout, and Xendit calls back."""
        try:
            invoice = await asyncio.to_thread(self.cluster.xendit.pay, request_id)
        except (InvoiceNotPayable, requests.RequestException) as exc:
            self.record.log(who, f"cannot pay {request_id}: {exc}")
            return False
        self.record.log(who, f"paid {invoice['id']} for {request_id}")
        self.crowd.spawn(self.callback(who, invoice, rng))
        return True


class Party:
    """One side of one chat: its session socket, messages, receipts, the goodbye."""

    def __init__(self, world: World, app: App, session_id: str, rng: random.Random, on_frame: Any = None) -> None:
        self.world, self.app, self.session_id, self.rng = world, app, session_id, rng
        self.status = "active"
        self.changed = asyncio.Event()
        self.on_event = on_frame
        self.sock: Socket = app.open(session_id, self._frame)

    async def _frame(self, sock: Socket, frame: dict[str, Any]) -> None:
        await self.app.on_chat_frame(sock, frame)
        kind = str(frame.get("type"))
        data = frame.get("data") or {}
        if kind in ("session.closing", "session.completed"):
            self.status = kind.split(".")[1]
            self.changed.set()
        elif kind == "session.extended":
            self.status = "active"
            self.changed.set()
        if self.on_event is not None:
            await self.on_event(kind, data)

    async def refresh_status(self) -> str:
        info = await self.app.http.data("GET", f"/api/shared/chat/{self.session_id}/info")
        if info:
            self.status = info["status"]
        return self.status

    async def chat_until_over(self, early_end_after: float | None) -> None:
        started = time.monotonic()
        await waited(self.sock.opened, 20)
        polled = time.monotonic()
        while True:
            await waited(self.changed, self.rng.uniform(2.5, 6))
            self.changed.clear()
            if self.status in ("closing", "completed"):
                break
            if not self.sock.opened.is_set() or time.monotonic() - polled > STATUS_POLL_SECONDS:
                polled = time.monotonic()
                if await self.refresh_status() in ("closing", "completed"):
                    break
            if self.status == "active":
                await self.app.send_message(self.sock, self.session_id)
            if early_end_after is not None and time.monotonic() - started > early_end_after:
                r = await self.app.http.call("POST", f"/api/client/chat/{self.session_id}/end")
                self.world.record.log(
                    self.app.who, f"ended {self.session_id} early: {r.status_code if r is not None else None}"
                )
                self.world.record.count("early ends")
                early_end_after = None

    async def goodbye(self) -> None:
        """The closing screen: re-read the chat, leave a goodbye or skip, and leave."""
        await self.app.resync(self.session_id, self.app.cursor(self.session_id))
        if self.rng.random() < 0.85:
            body: dict[str, Any] = {"content": f"makasih, {self.app.who}"}
            if self.rng.random() < 0.2:
                body = {"skip": True}
            r = await self.app.http.call("POST", f"/api/shared/chat/{self.session_id}/closing-message", body)
            self.world.record.count(f"goodbyes {r.status_code if r is not None else 'unanswered'}")
        await waited(self.changed, 5)
        await self.sock.close()


class Person:
    """A simulated user: its app, its own seeded randomness, and a task on the crowd's loop."""

    def __init__(self, world: World, name: str, user_type: str, seed: int) -> None:
        self.world, self.rng, self.name, self.user_type = world, random.Random(seed), name, user_type
        self.app: App

    async def setup(self) -> None:
        """Made on the loop (its sockets and locks belong to it)."""
        self.app = self.world.app(self.name, self.user_type)

    async def run(self) -> None:
        """The person's life in the run, as a crowd task (an exception is a harness fault: the
        crowd logs it and the run fails)."""
        raise NotImplementedError


class Customer(Person):
    def __init__(self, world: World, n: int) -> None:
        super().__init__(world, f"c{n}", "customer", world.seed * 1000 + n)
        self.n = n
        self.last_mitra: str | None = None
        self.extension: dict[str, Any] = {}

    async def setup(self) -> None:
        await super().setup()
        self.paired = asyncio.Event()

    async def run(self) -> None:
        w, http = self.world, self.app.http
        await asyncio.sleep(self.rng.uniform(0, 10))
        signed = await http.data("POST", "/api/shared/auth/anonymous", {"display_name": f"Cust {self.n}"})
        if not signed:
            w.record.log(self.app.who, "could not sign in")
            return
        http.signed_in(signed)
        w.record.count("customers signed in")
        self.app.user_id = signed["user"]["id"]
        await self.app.register_device()
        home = self.app.open(None, self._home)
        while clock() < w.stop_new_at:
            await self._one_session()
            if self.rng.random() < 0.3:  # the app goes to the background: the socket is gone a while
                await home.close()
                await asyncio.sleep(self.rng.uniform(2, 8))
                home = self.app.open(None, self._home)
            await asyncio.sleep(self.rng.uniform(1, 5))
        await home.close()

    async def _home(self, sock: Socket, frame: dict[str, Any]) -> None:
        if frame.get("type") == "session.paired":
            self.paired.set()

    async def _buy(self) -> dict[str, Any] | None:
        http, body = self.app.http, {"mode": "chat", "tier_id": self.world.tier_id}
        if self.last_mitra and self.rng.random() < 0.4:
            body["targeted_mitra_id"] = self.last_mitra  # "curhat lagi"
        key = {"Idempotency-Key": str(uuid.uuid4())}
        for _ in range(30):
            r = await http.call("POST", "/api/client/payment-requests", body, key)
            if r is not None and r.status_code == 201:
                return dict(r.json()["data"])
            code = r.json().get("error", {}).get("code") if r is not None and r.content else None
            if code == "MITRA_UNAVAILABLE":
                body.pop("targeted_mitra_id", None)
                key = {"Idempotency-Key": str(uuid.uuid4())}
            elif code == "ALREADY_ACTIVE":
                active = await http.data("GET", "/api/client/chat/active") or {}
                if active.get("session"):
                    await self._chat(active["session"]["id"], active["session"].get("mitra", {}).get("id"))
                return None
            await asyncio.sleep(2)
        return None

    async def _one_session(self) -> None:
        w, http = self.world, self.app.http
        payment = await self._buy()
        if payment is None:
            return
        self.paired.clear()
        if self.rng.random() < 0.1:  # a second tab's worth of hesitation: abandon, then pay anyway
            await http.call("POST", f"/api/client/payment-requests/{payment['id']}/abandon")
            w.record.count("abandoned then paid")
        if not await w.pay(self.app.who, payment["id"], self.rng):
            return
        deadline, fell_back = time.monotonic() + 150, False
        while time.monotonic() < deadline:
            await waited(self.paired, 3)  # the waiting screen polls; a session.paired frame ends the wait at once
            state = await http.data("GET", f"/api/client/payment-requests/{payment['id']}") or {}
            active = await http.data("GET", "/api/client/chat/active") or {}
            session = active.get("session")
            if session and session.get("status") in ("active", "extending", "closing"):
                w.record.count("paired")
                await self._chat(session["id"], (session.get("mitra") or {}).get("id"))
                return
            pairing = active.get("pairing") or {}
            if pairing.get("can_fallback") and not fell_back:
                r = await http.call("POST", "/api/client/chat/fallback-to-blast")
                w.record.log(
                    self.app.who, f"targeted timed out; fallback to blast: {r.status_code if r is not None else None}"
                )
                w.record.count("fallbacks")
                fell_back = True
            if state.get("status") in ("failed_pairing", "expired"):
                w.record.log(self.app.who, f"payment {payment['id']} ended {state.get('status')}")
                w.record.count(f"pairing {state.get('status')}")
                return
        w.record.log(self.app.who, f"gave up waiting for a pairing of {payment['id']}")

    async def _ext_frame(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "extension.resolved":
            self.extension = data

    async def _chat(self, session_id: str, mitra_id: str | None) -> None:
        w = self.world
        w.sessions.add(session_id)
        self.last_mitra = mitra_id
        party = Party(w, self.app, session_id, self.rng, self._ext_frame)
        early = self.rng.uniform(10, 40) if self.rng.random() < 0.15 else None
        if self.rng.random() < 0.35:
            w.crowd.spawn(self._extend(party))
        await party.chat_until_over(early)
        await party.goodbye()

    async def _extend(self, party: Party) -> None:
        """Ask for more time a while into the chat, and pay it once the mitra agrees."""
        await asyncio.sleep(self.rng.uniform(15, 40))
        if party.status != "active":
            return
        r = await self.app.http.call(
            "POST", f"/api/client/chat/{party.session_id}/extensions", {"tier_id": self.world.tier_id}
        )
        if r is None or r.status_code != 201:
            return
        asked = r.json()["data"]["id"]
        self.world.record.count("extensions asked")
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            info = await self.app.http.data("GET", f"/api/shared/chat/{party.session_id}/info") or {}
            ext = info.get("pending_extension") or {}
            heard = self.extension if self.extension.get("extension_id") == asked else {}
            request_id = ext.get("payment_request_id") or heard.get("payment_request_id")
            if request_id:
                if await self.world.pay(self.app.who, request_id, self.rng):
                    self.world.record.count("extensions paid")
                return
            if info.get("status") not in ("extending", "active") or (info.get("status") == "active" and not ext):
                return
            await asyncio.sleep(1)


class Mitra(Person):
    def __init__(self, world: World, n: int, phone: str) -> None:
        super().__init__(world, f"m{n}", "mitra", world.seed * 1000 + 500 + n)
        self.n, self.phone = n, phone
        self.chats: dict[str, Party] = {}

    async def sign_in(self) -> None:
        r = await asyncio.to_thread(
            requests.post,
            self.world.cluster.internal + "/internal/_test/seed-mitra",
            json={"phone": self.phone, "display_name": f"Bestie {self.n}"},
            timeout=30,
        )
        r.raise_for_status()
        data = r.json()["data"]
        self.app.http.signed_in(data)
        self.app.user_id = data["mitra_id"]
        await self.app.register_device()

    async def run(self) -> None:
        w, http = self.world, self.app.http
        await http.call("POST", "/api/mitra/status/online")
        home = self.app.open(None, self._home)
        next_beat = 0.0
        while clock() < w.stop_new_at + w.drain + 160:
            if time.monotonic() > next_beat:
                await http.call("POST", "/api/mitra/status/heartbeat")
                next_beat = time.monotonic() + 8
            if not self.chats and clock() < w.stop_new_at and self.rng.random() < 0.01:
                await http.call("POST", "/api/mitra/status/offline")  # a break
                w.record.count("mitra breaks")
                await asyncio.sleep(self.rng.uniform(3, 10))
                await http.call("POST", "/api/mitra/status/online")
            await asyncio.sleep(1)
        await home.close()

    async def _home(self, sock: Socket, frame: dict[str, Any]) -> None:
        kind, data = frame.get("type"), frame.get("data") or {}
        if kind == "pairing.request":
            # Only mitras with a free place hear a blast (max_customers_per_mitra, 3 by default).
            free = sum(1 for m in self.world.mitras if len(m.chats) < 3)
            racers = BLAST_RACERS / max(1, free)
            if data.get("request_type") == "targeted" or self.rng.random() < racers:
                self.world.crowd.spawn(self._answer(data))
        elif kind == "extension.requested":
            self.world.crowd.spawn(self._decide(data))

    async def _answer(self, request: dict[str, Any]) -> None:
        session_id = request["session_id"]
        await asyncio.sleep(self.rng.uniform(0.2, 2.0))
        roll = self.rng.random()
        if roll < 0.1:
            await self.app.http.call("POST", f"/api/mitra/chat-requests/{session_id}/decline")
            return
        if roll < 0.15:
            return  # missed it
        r = await self.app.http.call("POST", f"/api/mitra/chat-requests/{session_id}/accept")
        if r is None or r.status_code != 200 or session_id in self.chats:
            return
        party = self.chats[session_id] = Party(self.world, self.app, session_id, self.rng)
        try:
            await party.chat_until_over(None)
            await party.goodbye()
        finally:
            self.chats.pop(session_id, None)

    async def _decide(self, ext: dict[str, Any]) -> None:
        await asyncio.sleep(self.rng.uniform(0.5, 4))
        roll = self.rng.random()
        if roll < 0.15:
            return  # let the default action decide
        decision = "approve" if roll < 0.85 else "reject"
        await self.app.http.call("POST", f"/api/mitra/extensions/{ext['id']}/respond", {"decision": decision})
        self.world.record.count(f"extensions {decision}")
