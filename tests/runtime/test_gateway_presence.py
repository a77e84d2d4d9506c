"""A mitra goes offline when its app's last socket has been closed for
mitra_disconnect_grace_seconds (runtime/gateway/presence.py, lib/presence/state.offline_when_gone), not
when it comes back within the grace, nor when it chose its status or sent a heartbeat since; a
mitra online without any socket is left alone."""

from __future__ import annotations

import time

from lib.config.app import set_values
from lib.config.env import Settings
from lib.presence import state as presence
from lib.presence.keys import heartbeat_key
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
    assert not presence.offline_when_gone(s.db, s.valkey, str(toggled["id"]), closed_at)
    assert _online(chat, str(toggled["id"]))

    beating, _ = chat.mitra("Masih hidup")
    closed_at = time.time() - 1
    s.valkey.set(heartbeat_key(str(beating["id"])), time.time())
    assert not presence.offline_when_gone(s.db, s.valkey, str(beating["id"]), closed_at)
    assert _online(chat, str(beating["id"]))

    never, _ = chat.mitra("Belum pernah", online=False)
    assert not presence.offline_when_gone(s.db, s.valkey, str(never["id"]), time.time())
    assert _offline_reasons(chat, str(never["id"])) == []

    gone, _ = chat.mitra("Pergi")
    time.sleep(0.01)
    s.valkey.delete(heartbeat_key(str(gone["id"])))
    assert presence.offline_when_gone(s.db, s.valkey, str(gone["id"]), time.time())
    assert _offline_reasons(chat, str(gone["id"])) == ["socket_closed"]
