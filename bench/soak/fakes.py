"""The fake Xendit and FCM in a process of their own, so the harness's threads do not starve them.

In the harness's process, at 300 customers, the fakes' answers waited behind thousands of the
simulated phones' threads, Xendit calls from the service timed out, and the service's request
threads were held by those calls: a fault of the harness, not of the service. Run as
`python -m bench.soak.fakes SERVICE_ACCOUNT_PATH`, it prints one JSON line with its addresses and
serves until its stdin closes. A control endpoint gives the harness what it took from the objects
before: paying an invoice at the checkout, the invoices, the number of pushes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from tests.fakes import FakeFcm, FakeXendit, InvoiceNotPayable, JsonHandler, LoopbackServer

XENDIT_KEY = "xnd_development_soak"  # the key the cluster gives the service


def _control(xendit: FakeXendit, fcm: FakeFcm) -> LoopbackServer:
    class Handler(JsonHandler):
        def do_POST(self) -> None:
            if not self.path.startswith("/pay/"):
                self.reply(404, {"error": "unknown"})
                return
            try:
                self.reply(200, xendit.pay(self.path.removeprefix("/pay/")))
            except (InvoiceNotPayable, AssertionError, KeyError) as exc:
                self.reply(409, {"error": f"{type(exc).__name__}: {exc}"})

        def do_GET(self) -> None:
            if self.path == "/invoices":
                self.reply_list(list(xendit.invoices.values()))
            elif self.path == "/pushes":
                self.reply(200, {"count": len(fcm.sent)})
            else:
                self.reply(404, {"error": "unknown"})

    return LoopbackServer(Handler)


def serve(service_account: str) -> None:
    xendit, fcm = FakeXendit(XENDIT_KEY), FakeFcm()
    control = _control(xendit, fcm)
    with xendit.running(), fcm.running(), control.running():
        path = fcm.service_account(Path(service_account))
        print(json.dumps({"xendit": xendit.url, "fcm": fcm.url, "control": control.base_url, "account": path}))
        sys.stdout.flush()
        sys.stdin.read()  # until the harness closes it (or dies)


class RemoteXendit:
    """What the harness asks of the fake Xendit, over its control endpoint."""

    def __init__(self, url: str, control: str) -> None:
        self.url, self._control = url, control
        self._http = requests.Session()
        self._http.trust_env = False

    def pay(self, external_id: str) -> dict[str, Any]:
        r = self._http.post(f"{self._control}/pay/{external_id}", timeout=30)
        if r.status_code == 409:
            raise InvoiceNotPayable(r.json()["error"])
        r.raise_for_status()
        return dict(r.json())

    @property
    def invoices(self) -> dict[str, dict[str, Any]]:
        r = self._http.get(f"{self._control}/invoices", timeout=60)
        r.raise_for_status()
        return {inv["id"]: inv for inv in r.json()}


class RemoteFcm:
    def __init__(self, url: str, control: str, account: str) -> None:
        self.url, self._control, self.account = url, control, account

    def pushes(self) -> int:
        r = requests.get(f"{self._control}/pushes", timeout=60)
        r.raise_for_status()
        return int(r.json()["count"])


@contextmanager
def running(service_account: Path) -> Iterator[tuple[RemoteXendit, RemoteFcm]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.soak.fakes", str(service_account)],
        cwd=Path(__file__).resolve().parent.parent.parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        where = json.loads(proc.stdout.readline())
        yield (
            RemoteXendit(where["xendit"], where["control"]),
            RemoteFcm(where["fcm"], where["control"], where["account"]),
        )
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    serve(sys.argv[1])
