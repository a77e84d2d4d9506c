"""A mitra goes offline when its app's last socket has been closed for
mitra_disconnect_grace_seconds (runtime/gateway/presence.py, lib/presence/state.offline_when_gone), not
when it comes back within the grace, nor when it chose its status or sent a heartbeat since; a
mitra online without any socket is left alone."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from types import SimpleNamespace
from typing import Any, cast

from lib import sockets
from lib.config.app import set_values
from lib.config.env import Settings
from lib.presence import state as presence
from lib.presence.keys import heartbeat_key
from runtime.gateway import Gateway
from tests.chatflow import Chat
from tests.conftest import bearer
from tests.runtime.test_gateway_abuse import _ok
from tests.wsclient import gateway, socket


def _online(chat: Chat, mitra_id: str) -> bool:
    row = chat.pay.db.fetch_one("SELECT is_online FROM mitra_online_status WHERE mitra_id = %(m)s", {"m": mitra_id})
    return bool(row and row["is_online"])


def _offline_reasons(chat: Chat, mitra_id: str) -> list[str]:
    rows = chat.pay.db.fetch_all(
        "SELECT reason FROM mitra_online_logs WHERE mitra_id = %(m)s AND NOT is_online ORDER BY id", {"m": mitra_id}
    )
    return [r["reason"] for r in rows]


def test_a_mitra_goes_offline_a_grace_after_its_last_socket_closes(settings: Settings, chat: Chat) -> None:
    set_values(chat.pay.db, None, {"mitra_disconnect_grace_seconds": 1}, None)
    mitra, token = chat.mitra()
    fixture_set, _ = chat.mitra("Tanpa soket")  # online with no socket, as the e2e fixtures leave one
    mitra_id = str(mitra["id"])
    with gateway(settings) as (url, _):
        with socket(url, token) as first:
            _ok(first)
        with socket(url, token) as again:  # back within the grace: no flap
            _ok(again)
            time.sleep(2.0)
            assert _online(chat, mitra_id)
        deadline = time.monotonic() + 10
        while _online(chat, mitra_id) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _online(chat, mitra_id)
        assert _offline_reasons(chat, mitra_id) == ["socket_closed"]
    assert _online(chat, str(fixture_set["id"]))


def test_with_the_grace_at_zero_a_closed_socket_changes_nothing(settings: Settings, chat: Chat) -> None:
    set_values(chat.pay.db, None, {"mitra_disconnect_grace_seconds": 0}, None)
    mitra, token = chat.mitra()
    with gateway(settings) as (url, _):
        with socket(url, token) as one:
            _ok(one)
        time.sleep(1.5)
        assert _online(chat, str(mitra["id"]))


def test_what_the_mitra_did_after_the_close_wins(chat: Chat) -> None:
    """offline_when_gone is one conditional UPDATE: a status the mitra chose after its socket
    closed, or a heartbeat since (the app is alive, reconnecting), keeps the mitra online; a mitra
    who was never online gets no log row."""
    s = chat.pay
    toggled, token = chat.mitra("Pilih sendiri")
    closed_at = time.time() - 1
    for online in (False, True):
        assert (
            chat.app.simulate_post(
                f"/api/mitra/status/{'online' if online else 'offline'}", headers=bearer(token)
            ).status_code
            == 200
        )
    assert not presence.offline_when_gone(s.db, s.valkey, [(str(toggled["id"]), closed_at)])
    assert _online(chat, str(toggled["id"]))

    beating, _ = chat.mitra("Masih hidup")
    closed_at = time.time() - 1
    s.valkey.set(heartbeat_key(str(beating["id"])), time.time())
    assert not presence.offline_when_gone(s.db, s.valkey, [(str(beating["id"]), closed_at)])
    assert _online(chat, str(beating["id"]))

    never, _ = chat.mitra("Belum pernah", online=False)
    assert not presence.offline_when_gone(s.db, s.valkey, [(str(never["id"]), time.time())])
    assert _offline_reasons(chat, str(never["id"])) == []

    gone, _ = chat.mitra("Pergi")
    time.sleep(0.01)
    s.valkey.delete(heartbeat_key(str(gone["id"])))
    assert presence.offline_when_gone(s.db, s.valkey, [(str(gone["id"]), time.time())]) == {str(gone["id"])}
    assert _offline_reasons(chat, str(gone["id"])) == ["socket_closed"]


def test_mitras_named_together_each_get_their_own_outcome(chat: Chat) -> None:
    """offline_when_gone takes many mitras in one statement, and each is judged as alone: a status
    chosen since the close, a heartbeat since, a live socket or never having been online keeps that
    mitra as it is; the others go offline with one log row each (a mitra named twice: its latest
    close)."""
    s = chat.pay
    toggled, token = chat.mitra("Pilih sendiri")
    beating, _ = chat.mitra("Masih hidup")
    never, _ = chat.mitra("Belum pernah", online=False)
    elsewhere, _ = chat.mitra("Di replika lain")
    sockets.announce(s.valkey, [(sockets.key("mitra", str(elsewhere["id"])), sockets.member("other:1", None))])
    gone = [chat.mitra(f"Pergi {n}")[0] for n in range(3)]
    for mitra in (beating, *gone):
        s.valkey.delete(heartbeat_key(str(mitra["id"])))
    time.sleep(0.05)
    closed_at = time.time()  # after every mitra's own change so far: only what follows counts
    time.sleep(0.05)
    for path in ("offline", "online"):  # chosen since the close
        assert chat.app.simulate_post(f"/api/mitra/status/{path}", headers=bearer(token)).status_code == 200
    s.valkey.set(heartbeat_key(str(beating["id"])), time.time())  # alive since the close
    named = [(str(m["id"]), closed_at) for m in (toggled, beating, never, elsewhere, *gone)]
    named.append((str(gone[0]["id"]), closed_at - 60))  # an earlier close of the same mitra
    assert presence.offline_when_gone(s.db, s.valkey, named) == {str(m["id"]) for m in gone}
    for kept in (toggled, beating, elsewhere):
        assert _online(chat, str(kept["id"]))
    for mitra in gone:
        assert not _online(chat, str(mitra["id"]))
        assert _offline_reasons(chat, str(mitra["id"])) == ["socket_closed"]
    assert _offline_reasons(chat, str(never["id"])) == []
    assert presence.offline_when_gone(s.db, s.valkey, named) == set()  # already offline: no second row


def _close_together(gateway: Gateway, mitras: list[dict[str, Any]]) -> None:
    """The mitras' last sockets on `gateway` closed at the same moment: their grace, then offline."""

    async def main() -> None:
        gateway.loop = asyncio.get_running_loop()
        closed_at = time.time()
        await asyncio.gather(*(gateway.presence.offline_unless_back(str(m["id"]), closed_at) for m in mitras))

    try:
        asyncio.run(main())
    finally:
        gateway.pool.shutdown()


def test_mitras_whose_sockets_closed_together_go_offline_in_shared_batches(chat: Chat) -> None:
    """A network blip closes many mitras' sockets at once: after the grace they go offline in a few
    group commits (runtime/gateway/presence.py), not a pool job and a transaction each, so the
    message stores of the process do not queue behind them."""
    chat.config(mitra_disconnect_grace_seconds=1)
    mitras = [chat.mitra(f"Putus {n}")[0] for n in range(12)]
    gateway = Gateway(chat.pay, {})
    batches: list[int] = []
    offline_all = gateway.presence._gone.handle

    def counted(items: list[Any]) -> Any:
        batches.append(len(items))
        return offline_all(items)

    gateway.presence._gone.handle = counted

    _close_together(gateway, mitras)
    assert sum(batches) == len(mitras)
    # Each mitra reads its grace on the pool first, so the wake-ups spread over a few ms and a loaded
    # machine may need a flight or two more; one flight per mitra (no group commit) is 12.
    assert len(batches) <= len(mitras) // 3, batches
    for mitra in mitras:
        assert not _online(chat, str(mitra["id"]))
        assert _offline_reasons(chat, str(mitra["id"])) == ["socket_closed"]


def test_a_mitra_whose_valkey_key_is_broken_fails_alone(chat: Chat) -> None:
    """One mitra's key of the wrong type in Valkey (WRONGTYPE for the whole pipeline) is not Valkey
    being away: the batch is tried mitra by mitra, and only that one stays as it is."""
    chat.config(mitra_disconnect_grace_seconds=1)
    mitras = [chat.mitra(f"Putus {n}")[0] for n in range(5)]
    broken = str(mitras[2]["id"])
    chat.pay.valkey.set(sockets.key("mitra", broken), "not a sorted set")
    gateway = Gateway(chat.pay, {})

    try:
        _close_together(gateway, mitras)
    finally:
        chat.pay.valkey.delete(sockets.key("mitra", broken))
    assert _online(chat, broken)
    for mitra in mitras:
        if str(mitra["id"]) != broken:
            assert not _online(chat, str(mitra["id"]))


def test_a_forget_still_waiting_spares_a_socket_of_the_same_session_opened_since(chat: Chat) -> None:
    """A socket closes and its session opens another on the same process before the close's forget
    has gone out (announce and forget are separate batches): the late forget leaves the new
    socket's member in Valkey, and a stopping process sends the forgets still waiting."""
    s = chat.pay
    gateway = Gateway(s, {})
    session = SimpleNamespace(presence=(sockets.key("customer", str(uuid.uuid4())), str(uuid.uuid4())))
    other = SimpleNamespace(presence=(sockets.key("customer", str(uuid.uuid4())), None))
    again, first = gateway.presence.entry(cast(Any, session)), gateway.presence.entry(cast(Any, other))
    third = (sockets.key("mitra", str(uuid.uuid4())), first[1])
    s.valkey.delete(again[0], first[0])

    gate = threading.Event()  # the first forget's batch is held in its thread until the session is back
    forget_all = gateway.presence._forgotten.handle

    def held(entries: list[Any]) -> Any:
        gate.wait(5)
        return forget_all(entries)

    gateway.presence._forgotten.handle = held

    async def main() -> None:
        gateway.loop = asyncio.get_running_loop()
        await gateway.presence.joined(cast(Any, session))
        flying = asyncio.ensure_future(gateway.presence.forget(first))  # its batch leaves at once...
        await asyncio.sleep(0.01)
        waiting = asyncio.ensure_future(gateway.presence.forget(again))  # ...this one waits behind it
        await asyncio.sleep(0)
        # Whether `again` waits behind the held batch or (the machine stalled past STALL_SECONDS) rides
        # a second one, it cannot go out before the gate opens, so it is decided after the rejoin.
        await gateway.presence.joined(cast(Any, session))  # the session is back before its forget went out
        gate.set()
        await asyncio.gather(flying, waiting)
        gate.clear()  # held again, so the batch in flight cannot come back for `third` meanwhile
        flying = asyncio.ensure_future(gateway.presence.forget(first))
        await asyncio.sleep(0.01)
        unsent = asyncio.ensure_future(gateway.presence.forget(third))
        await asyncio.sleep(0)
        assert gateway.presence.unforgotten() == [third]  # taken out: the stop's last round sends it
        gate.set()
        await asyncio.gather(flying, unsent)

    try:
        asyncio.run(main())
    finally:
        gateway.pool.shutdown()
    assert s.valkey.zscore(again[0], again[1]) is not None
    s.valkey.delete(again[0])
