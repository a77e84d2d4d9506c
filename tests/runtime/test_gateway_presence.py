"""A mitra goes offline when its app's last socket has been closed for
mitra_disconnect_grace_seconds (runtime/gateway.py, lib/presence/state.offline_when_gone), not
when it comes back within the grace, and a mitra online without any socket is left alone."""

from __future__ import annotations

import time

from lib.config.app import set_values
from lib.config.env import Settings
from tests.chatflow import Chat
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
