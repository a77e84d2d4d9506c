"""Extensions: request pauses the chat, the mitra decides (or the default at the deadline), the
invoice comes only after approval, paying adds the minutes, a race with the timeout has one outcome."""

from __future__ import annotations

import logging
import socket
import threading
import time
from datetime import timedelta
from typing import Any

from lib import sockets
from lib.chat.extensions import decide_due
from lib.clock import utcnow
from lib.jobs import JobCtx
from lib.presence.keys import heartbeat_key
from lib.valkey import make_client
from tests.chatflow import Chat, job
from tests.conftest import bearer
from tests.payflow import paid_body, send_callback, tier_of


def _extend(chat: Chat, customer: dict[str, Any], session_id: str, minutes: int = 15) -> dict[str, Any]:
    result = chat.app.simulate_post(
        f"/api/client/chat/{session_id}/extensions",
        headers=bearer(customer["access_token"]),
        json={"tier_id": tier_of(chat.pay, minutes)},
    )
    assert result.status_code == 201, result.text
    doc: dict[str, Any] = result.json["data"]
    return doc


def _respond(chat: Chat, token: str, extension_id: str, decision: str):
    return chat.app.simulate_post(
        f"/api/mitra/extensions/{extension_id}/respond", headers=bearer(token), json={"decision": decision}
    )


def _expires(chat: Chat, session_id: str):
    row = chat.pay.db.fetch_one("SELECT expires_at, status FROM chat_sessions WHERE id = %(s)s", {"s": session_id})
    assert row is not None
    return row


def test_approve_invoice_pay_and_the_minutes_are_added(chat: Chat) -> None:
    customer, mitra, token, session_id = chat.paired(minutes=15)
    before = _expires(chat, session_id)["expires_at"]
    ext = _extend(chat, customer, session_id, minutes=30)
    assert ext["status"] == "pending"
    assert ext["price"] == 60000
    assert ext["duration_minutes"] == 30
    assert ext["timeout_seconds"] == 10
    assert chat.status(session_id) == "extending"
    assert chat.heard.last("mitra", mitra["id"], "extension.requested")["data"]["id"] == ext["id"]
    paused = chat.app.simulate_post(
        f"/api/shared/chat/{session_id}/messages",
        headers=bearer(customer["access_token"]),
        json={"client_message_id": "x", "content": "halo?"},
    )
    assert paused.status_code == 409
    assert paused.json["error"]["code"] == "SESSION_PAUSED"
    again = chat.app.simulate_post(
        f"/api/client/chat/{session_id}/extensions",
        headers=bearer(customer["access_token"]),
        json={"tier_id": tier_of(chat.pay, 15)},
    )
    assert again.status_code == 409
    assert again.json["error"]["code"] == "EXTENSION_PENDING"
    info = chat.app.simulate_get(f"/api/shared/chat/{session_id}/info", headers=bearer(customer["access_token"])).json
    assert info["data"]["pending_extension"]["extension_id"] == ext["id"]

    approved = _respond(chat, token, ext["id"], "approve")
    assert approved.status_code == 200, approved.text
    decided = approved.json["data"]
    assert decided["status"] == "approved"
    assert decided["invoice_url"].startswith("https://checkout")
    resolved = chat.heard.last("customer", customer["user"]["id"], "extension.resolved")["data"]
    assert resolved["payment_request_id"] == decided["payment_request_id"]
    assert resolved["invoice_url"]
    twice = _respond(chat, token, ext["id"], "reject")
    assert twice.status_code == 409
    assert twice.json["error"]["code"] == "EXTENSION_ALREADY_DECIDED"
    polled = chat.app.simulate_get(
        f"/api/client/payment-requests/{decided['payment_request_id']}", headers=bearer(customer["access_token"])
    ).json["data"]
    assert polled["status"] == "pending"
    assert polled["amount"] == 60000
    assert polled["discount"] == 0

    paid = send_callback(chat.app, paid_body(polled))
    assert paid.json == {"ok": True, "confirmed": True}
    after = _expires(chat, session_id)
    assert after["status"] == "active"
    # 30 minutes more than what was left when the chat paused (a little time passed meanwhile).
    assert timedelta(minutes=29, seconds=50) < after["expires_at"] - before < timedelta(minutes=30, seconds=10)
    assert chat.heard.last("customer", customer["user"]["id"], "session.extended")["data"]["session_id"] == session_id
    row = chat.pay.db.fetch_one("SELECT duration_minutes FROM chat_sessions")
    assert row == {"duration_minutes": 45}
    assert chat.pay.db.fetch_one("SELECT status FROM session_extensions") == {"status": "paid"}
    assert chat.payment_status({"id": decided["payment_request_id"]}) == "consumed"


def test_a_rejection_moves_the_session_to_closing_with_the_goodbye_grace(chat: Chat) -> None:
    customer, mitra, token, session_id = chat.paired()
    ext = _extend(chat, customer, session_id)
    rejected = _respond(chat, token, ext["id"], "reject")
    assert rejected.json["data"]["status"] == "rejected"
    assert chat.status(session_id) == "closing"
    closing = chat.heard.last("customer", customer["user"]["id"], "session.closing")["data"]
    assert closing["session_id"] == session_id
    assert closing["closing_expires_at"]
    assert chat.heard.last("mitra", mitra["id"], "session.closing")["data"]["session_id"] == session_id
    assert chat.pay.db.fetch_one("SELECT count(*) AS n FROM payment_requests WHERE kind = 'extension'") == {"n": 0}


def test_with_the_operator_setting_a_rejection_resumes_with_the_time_that_was_left(chat: Chat) -> None:
    chat.config(extension_refusal_resumes=True)
    customer, _, token, session_id = chat.paired()
    left = _expires(chat, session_id)["expires_at"]
    ext = _extend(chat, customer, session_id)
    assert _respond(chat, token, ext["id"], "reject").json["data"]["status"] == "rejected"
    after = _expires(chat, session_id)
    assert after["status"] == "active"
    assert abs((after["expires_at"] - left).total_seconds()) < 5


def test_an_approved_extension_is_payable_only_while_the_time_left_lasts(chat: Chat) -> None:
    customer, _, token, session_id = chat.paired()
    chat.pay.db.execute("UPDATE chat_sessions SET expires_at = now() + interval '150 seconds'")
    ext = _extend(chat, customer, session_id)
    approved = _respond(chat, token, ext["id"], "approve").json["data"]
    request = chat.pay.db.fetch_one(
        "SELECT expires_at - created_at AS valid FROM payment_requests WHERE id = %(p)s",
        {"p": approved["payment_request_id"]},
    )
    assert request is not None
    assert request["valid"] == timedelta(minutes=3)  # 2.5 minutes left, whole minutes


def test_the_default_action_decides_at_the_deadline(chat: Chat) -> None:
    customer, _, _, session_id = chat.paired()
    _extend(chat, customer, session_id)
    chat.pay.db.execute("UPDATE session_extensions SET expires_at = now() - interval '1 second'")
    chat.tick()
    row = chat.pay.db.fetch_one("SELECT status, decided_by, payment_request_id FROM session_extensions")
    assert row is not None
    assert row["status"] == "approved"
    assert row["decided_by"] == "auto_approve"
    assert row["payment_request_id"] is None  # the invoice is the extension_invoices job's, not the deadline's
    job("extension_invoices").module.run(JobCtx(chat.pay, logging.getLogger("test"), utcnow))
    billed = chat.pay.db.fetch_one("SELECT payment_request_id FROM session_extensions")
    assert billed is not None
    assert billed["payment_request_id"] is not None
    assert chat.heard.last("customer", customer["user"]["id"], "extension.resolved")["data"]["invoice_url"]

    # Unpaid by its deadline: the extension lapses and the chat moves to its goodbyes.
    chat.pay.db.execute("UPDATE session_extensions SET pay_by = now() - interval '1 second'")
    chat.tick()
    assert chat.pay.db.fetch_one("SELECT status FROM session_extensions") == {"status": "expired"}
    assert chat.status(session_id) == "closing"
    # Money that arrives after that is recorded for a refund, not lost and not applied.
    late = chat.pay.db.fetch_one("SELECT * FROM payment_requests WHERE kind = 'extension'")
    assert late is not None
    send_callback(chat.app, paid_body({"id": str(late["id"]), "amount": late["amount"]}))
    assert chat.pay.db.fetch_one("SELECT cause FROM pairing_failures") == {"cause": "EXTENSION_NOT_APPLIED"}


def _heartbeats_ten_minutes_old(chat: Chat, mitra_id: str) -> None:
    """In PostgreSQL and in Valkey (where the newest heartbeat lives until a sweep copies it)."""
    chat.pay.db.execute(
        "UPDATE mitra_online_status SET last_heartbeat_at = now() - interval '10 minutes', "
        "changed_at = now() - interval '10 minutes' WHERE mitra_id = %(m)s",
        {"m": mitra_id},
    )
    chat.pay.valkey.set(heartbeat_key(mitra_id), time.time() - 600)


def _decided_at_the_deadline(chat: Chat, extension_id: str) -> dict[str, Any] | None:
    chat.pay.db.execute(
        "UPDATE session_extensions SET expires_at = now() - interval '1 second' WHERE id = %(e)s", {"e": extension_id}
    )
    chat.tick()
    return chat.pay.db.fetch_one(
        "SELECT status, decided_by, payment_request_id FROM session_extensions WHERE id = %(e)s", {"e": extension_id}
    )


def test_the_offline_safeguard_does_not_approve_for_a_mitra_who_is_gone(chat: Chat) -> None:
    """The default approves, but not for a listener with no socket and no recent heartbeat: the
    extension is rejected (the customer is not charged) and the chat moves to its goodbyes."""
    customer, gone, _, session_id = chat.paired()
    ext = _extend(chat, customer, session_id)
    _heartbeats_ten_minutes_old(chat, str(gone["id"]))
    assert _decided_at_the_deadline(chat, ext["id"]) == {
        "status": "rejected",
        "decided_by": "auto_reject",
        "payment_request_id": None,
    }
    assert chat.status(session_id) == "closing"


def test_the_offline_safeguard_counts_a_live_socket_and_a_heartbeat_not_yet_in_postgres(chat: Chat) -> None:
    """Reachable: a mitra marked offline with a live socket (offline only stops new requests), and
    one whose only fresh heartbeat is still in Valkey (PostgreSQL's copy lags by up to a sweep)."""
    customer, here, _, session_id = chat.paired()
    _heartbeats_ten_minutes_old(chat, str(here["id"]))
    chat.pay.db.execute("UPDATE mitra_online_status SET is_online = false WHERE mitra_id = %(m)s", {"m": here["id"]})
    sockets.announce(chat.pay.valkey, [(sockets.key("mitra", str(here["id"])), sockets.member("gw", session_id))])
    ext = _extend(chat, customer, session_id)
    assert (_decided_at_the_deadline(chat, ext["id"]) or {}).get("decided_by") == "auto_approve"

    other, beating, _, other_session = chat.paired()
    _heartbeats_ten_minutes_old(chat, str(beating["id"]))
    chat.pay.valkey.set(heartbeat_key(str(beating["id"])), time.time())
    ext = _extend(chat, other, other_session)
    assert (_decided_at_the_deadline(chat, ext["id"]) or {}).get("decided_by") == "auto_approve"


def test_auto_reject_with_no_time_left_closes_the_session(chat: Chat) -> None:
    chat.config(extension_default_action_on_timeout="auto_reject")
    customer, _, _, session_id = chat.paired()
    _extend(chat, customer, session_id)
    chat.pay.db.execute(
        "UPDATE chat_sessions SET expires_at = paused_at - interval '1 second'; "
        "UPDATE session_extensions SET expires_at = now() - interval '1 second'"
    )
    chat.tick()
    assert chat.pay.db.fetch_one("SELECT decided_by FROM session_extensions") == {"decided_by": "auto_reject"}
    assert chat.status(session_id) == "closing"


def _race_once(chat: Chat) -> None:
    customer, _, token, session_id = chat.paired()
    ext = _extend(chat, customer, session_id)
    chat.pay.db.execute("UPDATE session_extensions SET expires_at = now() WHERE id = %(e)s", {"e": ext["id"]})
    outcomes: list[Any] = []
    barrier = threading.Barrier(2)

    def mitra_says_no() -> None:
        barrier.wait()
        outcomes.append(_respond(chat, token, ext["id"], "reject").status_code)

    def timeout_fires() -> None:
        barrier.wait()
        outcomes.append(decide_due(chat.pay.db, chat.pay.valkey, chat.pay.config, chat.pay.chat_events))

    threads = [threading.Thread(target=mitra_says_no), threading.Thread(target=timeout_fires)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    row = chat.pay.db.fetch_one("SELECT status, decided_by FROM session_extensions WHERE id = %(e)s", {"e": ext["id"]})
    assert row is not None
    code = next(o for o in outcomes if isinstance(o, int))
    by_timeout = next(o for o in outcomes if isinstance(o, list))
    if row["decided_by"] == "mitra":
        assert code == 200
        assert by_timeout == []
        assert row["status"] == "rejected"
    else:
        assert code == 409
        assert by_timeout == [ext["id"]]
        assert row["status"] == "approved"
    chat.app.simulate_post(f"/api/client/chat/{session_id}/end", headers=bearer(customer["access_token"]))
    chat.pay.db.execute("UPDATE chat_sessions SET status = 'completed' WHERE id = %(s)s", {"s": session_id})


def test_the_mitras_answer_racing_the_timeout_has_exactly_one_outcome(chat: Chat) -> None:
    for _ in range(5):
        _race_once(chat)


SET_UP = {"PING": b"+PONG\r\n", "HELLO": b"-ERR unknown command 'HELLO'\r\n", "CLIENT": b"+OK\r\n"}


class _HangingValkey:
    """A loopback Valkey that hangs: it answers the client's connection set-up (PING, HELLO refused
    so the client speaks RESP2, CLIENT ...) and never anything else. The commands each connection
    sent are kept, by name."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        self.commands: list[list[str]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.commands.append([])
            threading.Thread(target=self._serve, args=(conn, self.commands[-1]), daemon=True).start()

    @staticmethod
    def _serve(conn: socket.socket, names: list[str]) -> None:
        with conn, conn.makefile("rb") as stream:
            while (header := stream.readline()).startswith(b"*"):
                args = []
                for _ in range(int(header[1:])):
                    size = int(stream.readline()[1:])
                    args.append(stream.read(size + 2)[:-2])
                names.append(args[0].decode().upper())
                if reply := SET_UP.get(names[-1]):
                    conn.sendall(reply)

    def close(self) -> None:
        self.listener.close()


def test_the_offline_safeguard_asks_a_hanging_valkey_once_per_tick_not_once_per_extension(chat: Chat) -> None:
    """Every due extension's mitra is looked up in one Valkey round trip between the claim and the
    firings: a Valkey that hangs costs the tick one timeout while the rows are locked, not one per
    extension, and PostgreSQL's heartbeats then decide (these mitras are online and fresh)."""
    extensions = []
    for _ in range(4):
        customer, _, _, session_id = chat.paired()
        extensions.append(_extend(chat, customer, session_id)["id"])
    chat.pay.db.execute("UPDATE session_extensions SET expires_at = now() - interval '1 second'")
    valkey = _HangingValkey()
    try:
        decided = decide_due(chat.pay.db, make_client(valkey.url, 0.2), chat.pay.config, chat.pay.chat_events)
    finally:
        valkey.close()
    assert sorted(decided) == sorted(extensions)
    rows = chat.pay.db.fetch_all("SELECT decided_by FROM session_extensions")
    assert [r["decided_by"] for r in rows] == ["auto_approve"] * 4
    asked = [names.count("ZCOUNT") for names in valkey.commands if "ZCOUNT" in names]
    assert asked == [4]  # one connection, one pipeline, every mitra in it


def test_a_heartbeat_valkey_cannot_parse_fails_no_other_extension_of_the_tick(chat: Chat) -> None:
    """The lookup is shared by the tick's extensions, so one mitra's unreadable heartbeat counts as
    none (PostgreSQL's copy decides for that mitra) and fails nobody's decision."""
    first, garbled, _, first_session = chat.paired()
    second, _, _, second_session = chat.paired()
    chat.pay.valkey.set(heartbeat_key(str(garbled["id"])), "not a time")
    _extend(chat, first, first_session)
    _extend(chat, second, second_session)
    chat.pay.db.execute("UPDATE session_extensions SET expires_at = now() - interval '1 second'")
    chat.tick()
    rows = chat.pay.db.fetch_all("SELECT decided_by FROM session_extensions")
    assert [r["decided_by"] for r in rows] == ["auto_approve", "auto_approve"]
