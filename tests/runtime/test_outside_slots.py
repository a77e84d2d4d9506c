"""Through the real public listener (WEB_THREADS=4, one worker): a hanging Xendit holds two of its
threads, never all four. Payment requests past that are refused at once (502, no row kept), and a
database-bound read of another customer is answered meanwhile, not after Xendit."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from lib.config.env import Settings
from lib.services import Services
from tests.conftest import bearer
from tests.fakes import FakeXendit
from tests.helpers import free_port, runtime_process, stop_process
from tests.payflow import CREATE, tier_of, xendit_env

HANG = 6.0  # how long Xendit takes to answer


def test_a_hanging_xendit_holds_half_the_threads(
    settings: Settings, xendit: FakeXendit, pay: Services, online_mitra: dict[str, Any], anonymous
) -> None:
    customers = [anonymous(f"Pembeli {i}")["access_token"] for i in range(6)]
    body = {"mode": "chat", "tier_id": tier_of(pay, 15)}
    env = xendit_env(settings, xendit, XENDIT_TIMEOUT_SECONDS="10", WEB_THREADS="4")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with runtime_process(["serve", "public", "--bind", f"127.0.0.1:{port}"], env, url + "/health") as proc:

        def create(token: str) -> requests.Response:
            return requests.post(url + CREATE, json=body, headers=bearer(token), timeout=HANG + 10)

        xendit.delay = HANG
        with ThreadPoolExecutor(8) as pool:
            hanging = [pool.submit(create, t) for t in customers[:2]]
            deadline = time.monotonic() + 10
            while xendit.started < 2:
                assert time.monotonic() < deadline, "the first two never reached Xendit"
                time.sleep(0.02)
            began = time.monotonic()
            refused = [f.result() for f in [pool.submit(create, t) for t in customers[2:5]]]
            read = requests.get(url + "/api/client/chat/active", headers=bearer(customers[5]), timeout=HANG + 10)
            waited = time.monotonic() - began
            assert [r.status_code for r in refused] == [502] * 3, [r.text for r in refused]
            assert {r.json()["error"]["code"] for r in refused} == {"PAYMENT_GATEWAY_ERROR"}
            assert read.status_code == 200, read.text
            assert waited < HANG / 2, f"waited {waited:.1f}s: the refused calls or the read queued behind Xendit"
            assert [f.result().status_code for f in hanging] == [201, 201]
        assert xendit.started == 2  # the refused ones never reached Xendit
        kept = pay.db.fetch_one("SELECT count(*) AS n FROM payment_requests")
        assert kept == {"n": 2}  # nor left a request row behind
        out = stop_process(proc)
    assert "outside-call slots" in out  # operators see why a call was refused
