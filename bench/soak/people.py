"""Customers and mitras as the apps drive them: sign in, heartbeat, pay (with Xendit's duplicated, late
and out-of-order callbacks), pair (blast, targeted, fallback), chat with receipts and typing,
extensions, early ends, goodbyes, going offline."""

from __future__ import annotations

import random
import threading
import time
import uuid
from typing import Any

import requests

from bench.soak.apps import App, Record, Socket, clock
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
        self, cluster: Cluster, record: Record, seed: int, stop_new_at: float, tier_id: str, drain: float
    ) -> None:
        self.cluster, self.record, self.stop_new_at, self.tier_id = cluster, record, stop_new_at, tier_id
        self.drain = drain  # seconds after stop_new_at for the last chats (and their extensions) to end
        self.seed = seed
        self.mitras: list[Mitra] = []
        self.customers: list[Customer] = []
        self.sessions: set[str] = set()
        self.lock = threading.Lock()

    def app(self, who: str, user_type: str) -> App:
        return App(self.record, who, user_type, self.cluster.public, self.cluster.realtime)

    def callback(self, who: str, invoice: dict[str, Any], rng: random.Random) -> None:
        """Xendit tells us the invoice was paid, in one of its habits; a 5xx or no answer is sent again."""
        style = rng.choices(list(CALLBACK_STYLES), list(CALLBACK_STYLES.values()))[0]
        self.record.count(f"callbacks {style}")
        body = {**invoice, "status": "PAID"}
        if style == "settled first":
            self._post(who, {**invoice, "status": "SETTLED"})
        if style == "late":
            time.sleep(rng.uniform(3, 10))
        if style == "concurrent":
            twin = threading.Thread(target=self._post, args=(who, body), daemon=True)
            twin.start()
        self._post(who, body)
        if style == "duplicated":
            time.sleep(rng.uniform(0, 2))
            self._post(who, body)

    def _post(self, who: str, body: dict[str, Any]) -> None:
        http = self.app(f"xendit>{who}", "xendit").http
        r = http.call("POST", WEBHOOK, body, {"x-callback-token": WEBHOOK_TOKEN})
        if r is None or r.status_code != 200:
            self.record.log(
                who, f"callback for {body['external_id']} unanswered ({r.status_code if r is not None else None})"
            )

    def pay(self, who: str, request_id: str, rng: random.Random) -> bool:
        """The customer pays the request's invoice at Xendit's checkout, and Xendit calls back."""
        try:
            invoice = self.cluster.xendit.pay(request_id)
        except (InvoiceNotPayable, requests.RequestException) as exc:
            self.record.log(who, f"cannot pay {request_id}: {exc}")
            return False
        self.record.log(who, f"paid {invoice['id']} for {request_id}")
        threading.Thread(target=self.callback, args=(who, invoice, rng), daemon=True).start()
        return True


class Party:
    """One side of one chat: its session socket, messages, receipts, the goodbye."""

    def __init__(self, world: World, app: App, session_id: str, rng: random.Random, on_frame: Any = None) -> None:
        self.world, self.app, self.session_id, self.rng = world, app, session_id, rng
        self.status = "active"
        self.changed = threading.Event()
        self.on_event = on_frame
        self.sock: Socket = app.open(session_id, self._frame)

    def _frame(self, sock: Socket, frame: dict[str, Any]) -> None:
        self.app.on_chat_frame(sock, frame)
        kind = str(frame.get("type"))
        data = frame.get("data") or {}
        if kind in ("session.closing", "session.completed"):
            self.status = kind.split(".")[1]
            self.changed.set()
        elif kind == "session.extended":
            self.status = "active"
            self.changed.set()
        if self.on_event is not None:
            self.on_event(kind, data)

    def refresh_status(self) -> str:
        info = self.app.http.data("GET", f"/api/shared/chat/{self.session_id}/info")
        if info:
            self.status = info["status"]
        return self.status

    def chat_until_over(self, early_end_after: float | None) -> None:
        started, n = time.monotonic(), 0
        self.sock.opened.wait(20)
        polled = time.monotonic()
        while True:
            self.changed.wait(self.rng.uniform(2.5, 6))
            self.changed.clear()
            if self.status in ("closing", "completed"):
                break
            if not self.sock.opened.is_set() or time.monotonic() - polled > STATUS_POLL_SECONDS:
                polled = time.monotonic()
                if self.refresh_status() in ("closing", "completed"):
                    break
            if self.status == "active":
                n += 1
                self.app.send_message(self.sock, self.session_id, n)
            if early_end_after is not None and time.monotonic() - started > early_end_after:
                r = self.app.http.call("POST", f"/api/client/chat/{self.session_id}/end")
                self.world.record.log(
                    self.app.who, f"ended {self.session_id} early: {r.status_code if r is not None else None}"
                )
                self.world.record.count("early ends")
                early_end_after = None

    def goodbye(self) -> None:
        """The closing screen: re-read the chat, leave a goodbye or skip, and leave."""
        self.app.resync(self.session_id, self.app.cursor(self.session_id))
        if self.rng.random() < 0.85:
            body: dict[str, Any] = {"content": f"makasih, {self.app.who}"}
            if self.rng.random() < 0.2:
                body = {"skip": True}
            r = self.app.http.call("POST", f"/api/shared/chat/{self.session_id}/closing-message", body)
            self.world.record.count(f"goodbyes {r.status_code if r is not None else 'unanswered'}")
        self.changed.wait(5)
        self.sock.close()


class Person(threading.Thread):
    """A simulated user's thread: its app and its own seeded randomness."""

    def __init__(self, world: World, name: str, user_type: str, seed: int) -> None:
        super().__init__(daemon=True, name=name)
        self.world, self.rng = world, random.Random(seed)
        self.app = world.app(name, user_type)

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a harness fault: logged, and the run goes on with the others
            self.world.record.log(self.app.who, f"HARNESS ERROR {type(exc).__name__}: {exc}")
            self.world.record.count("harness errors")

    def _run(self) -> None:
        raise NotImplementedError


class Customer(Person):
    def __init__(self, world: World, n: int) -> None:
        super().__init__(world, f"c{n}", "customer", world.seed * 1000 + n)
        self.n = n
        self.last_mitra: str | None = None
        self.paired = threading.Event()
        self.extension: dict[str, Any] = {}

    def _run(self) -> None:
        w, http = self.world, self.app.http
        time.sleep(self.rng.uniform(0, 10))
        signed = http.data("POST", "/api/shared/auth/anonymous", {"display_name": f"Cust {self.n}"})
        if not signed:
            w.record.log(self.app.who, "could not sign in")
            return
        http.signed_in(signed)
        w.record.count("customers signed in")
        self.app.user_id = signed["user"]["id"]
        self.app.register_device()
        home = self.app.open(None, self._home)
        while clock() < w.stop_new_at:
            self._one_session()
            if self.rng.random() < 0.3:  # the app goes to the background: the socket is gone a while
                home.close()
                time.sleep(self.rng.uniform(2, 8))
                home = self.app.open(None, self._home)
            time.sleep(self.rng.uniform(1, 5))
        home.close()

    def _home(self, sock: Socket, frame: dict[str, Any]) -> None:
        if frame.get("type") == "session.paired":
            self.paired.set()

    def _buy(self) -> dict[str, Any] | None:
        http, body = self.app.http, {"mode": "chat", "tier_id": self.world.tier_id}
        if self.last_mitra and self.rng.random() < 0.4:
            body["targeted_mitra_id"] = self.last_mitra  # "curhat lagi"
        key = {"Idempotency-Key": str(uuid.uuid4())}
        for _ in range(30):
            r = http.call("POST", "/api/client/payment-requests", body, key)
            if r is not None and r.status_code == 201:
                return dict(r.json()["data"])
            code = r.json().get("error", {}).get("code") if r is not None and r.content else None
            if code == "MITRA_UNAVAILABLE":
                body.pop("targeted_mitra_id", None)
                key = {"Idempotency-Key": str(uuid.uuid4())}
            elif code == "ALREADY_ACTIVE":
                active = http.data("GET", "/api/client/chat/active") or {}
                if active.get("session"):
                    self._chat(active["session"]["id"], active["session"].get("mitra", {}).get("id"))
                return None
            time.sleep(2)
        return None

    def _one_session(self) -> None:
        w, http = self.world, self.app.http
        payment = self._buy()
        if payment is None:
            return
        self.paired.clear()
        if self.rng.random() < 0.1:  # a second tab's worth of hesitation: abandon, then pay anyway
            http.call("POST", f"/api/client/payment-requests/{payment['id']}/abandon")
            w.record.count("abandoned then paid")
        if not w.pay(self.app.who, payment["id"], self.rng):
            return
        deadline, fell_back = time.monotonic() + 150, False
        while time.monotonic() < deadline:
            self.paired.wait(3)  # the waiting screen polls; a session.paired frame ends the wait at once
            state = http.data("GET", f"/api/client/payment-requests/{payment['id']}") or {}
            active = http.data("GET", "/api/client/chat/active") or {}
            session = active.get("session")
            if session and session.get("status") in ("active", "extending", "closing"):
                w.record.count("paired")
                self._chat(session["id"], (session.get("mitra") or {}).get("id"))
                return
            pairing = active.get("pairing") or {}
            if pairing.get("can_fallback") and not fell_back:
                r = http.call("POST", "/api/client/chat/fallback-to-blast")
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

    def _ext_frame(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "extension.resolved":
            self.extension = data

    def _chat(self, session_id: str, mitra_id: str | None) -> None:
        w = self.world
        with w.lock:
            w.sessions.add(session_id)
        self.last_mitra = mitra_id
        party = Party(w, self.app, session_id, self.rng, self._ext_frame)
        early = self.rng.uniform(10, 40) if self.rng.random() < 0.15 else None
        if self.rng.random() < 0.35:
            threading.Thread(target=self._extend, args=(party,), daemon=True).start()
        party.chat_until_over(early)
        party.goodbye()

    def _extend(self, party: Party) -> None:
        """Ask for more time a while into the chat, and pay it once the mitra agrees."""
        time.sleep(self.rng.uniform(15, 40))
        if party.status != "active":
            return
        r = self.app.http.call(
            "POST", f"/api/client/chat/{party.session_id}/extensions", {"tier_id": self.world.tier_id}
        )
        if r is None or r.status_code != 201:
            return
        asked = r.json()["data"]["id"]
        self.world.record.count("extensions asked")
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            info = self.app.http.data("GET", f"/api/shared/chat/{party.session_id}/info") or {}
            ext = info.get("pending_extension") or {}
            heard = self.extension if self.extension.get("extension_id") == asked else {}
            request_id = ext.get("payment_request_id") or heard.get("payment_request_id")
            if request_id:
                if self.world.pay(self.app.who, request_id, self.rng):
                    self.world.record.count("extensions paid")
                return
            if info.get("status") not in ("extending", "active") or (info.get("status") == "active" and not ext):
                return
            time.sleep(1)


class Mitra(Person):
    def __init__(self, world: World, n: int, phone: str) -> None:
        super().__init__(world, f"m{n}", "mitra", world.seed * 1000 + 500 + n)
        self.n, self.phone = n, phone
        self.chats: dict[str, Party] = {}
        self.lock = threading.Lock()

    def sign_in(self) -> None:
        r = requests.post(
            self.world.cluster.internal + "/internal/_test/seed-mitra",
            json={"phone": self.phone, "display_name": f"Bestie {self.n}"},
            timeout=30,
        )
        r.raise_for_status()
        data = r.json()["data"]
        self.app.http.signed_in(data)
        self.app.user_id = data["mitra_id"]
        self.app.register_device()

    def _run(self) -> None:
        w, http = self.world, self.app.http
        http.call("POST", "/api/mitra/status/online")
        home = self.app.open(None, self._home)
        next_beat = 0.0
        while clock() < w.stop_new_at + w.drain + 160:
            if time.monotonic() > next_beat:
                http.call("POST", "/api/mitra/status/heartbeat")
                next_beat = time.monotonic() + 8
            with self.lock:
                busy = bool(self.chats)
            if not busy and clock() < w.stop_new_at and self.rng.random() < 0.01:
                http.call("POST", "/api/mitra/status/offline")  # a break
                w.record.count("mitra breaks")
                time.sleep(self.rng.uniform(3, 10))
                http.call("POST", "/api/mitra/status/online")
            time.sleep(1)
        home.close()

    def _home(self, sock: Socket, frame: dict[str, Any]) -> None:
        kind, data = frame.get("type"), frame.get("data") or {}
        if kind == "pairing.request":
            # Only mitras with a free place hear a blast (max_customers_per_mitra, 3 by default).
            free = sum(1 for m in self.world.mitras if len(m.chats) < 3)
            racers = BLAST_RACERS / max(1, free)
            if data.get("request_type") == "targeted" or self.rng.random() < racers:
                threading.Thread(target=self._answer, args=(data,), daemon=True).start()
        elif kind == "extension.requested":
            threading.Thread(target=self._decide, args=(data,), daemon=True).start()

    def _answer(self, request: dict[str, Any]) -> None:
        session_id = request["session_id"]
        time.sleep(self.rng.uniform(0.2, 2.0))
        roll = self.rng.random()
        if roll < 0.1:
            self.app.http.call("POST", f"/api/mitra/chat-requests/{session_id}/decline")
            return
        if roll < 0.15:
            return  # missed it
        r = self.app.http.call("POST", f"/api/mitra/chat-requests/{session_id}/accept")
        if r is None or r.status_code != 200:
            return
        with self.lock:
            if session_id in self.chats:
                return
            party = Party(self.world, self.app, session_id, self.rng)
            self.chats[session_id] = party
        threading.Thread(target=self._chat, args=(party,), daemon=True).start()

    def _chat(self, party: Party) -> None:
        party.chat_until_over(None)
        party.goodbye()
        with self.lock:
            self.chats.pop(party.session_id, None)

    def _decide(self, ext: dict[str, Any]) -> None:
        time.sleep(self.rng.uniform(0.5, 4))
        roll = self.rng.random()
        if roll < 0.15:
            return  # let the default action decide
        decision = "approve" if roll < 0.85 else "reject"
        self.app.http.call("POST", f"/api/mitra/extensions/{ext['id']}/respond", {"decision": decision})
        self.world.record.count(f"extensions {decision}")
