"""The gateway against WebSocket clients we did not write: Node's `ws` (the most used one) and headless
Chromium, driven through the DevTools protocol. Our own test client accepted a close frame carrying
1005, which RFC 6455 (7.4.1) forbids on the wire and every real client rejects; these tests hold the
gateway to what real clients expect (RFC 6455 and RFC 7692). What a real client cannot send (frames
that break the RFC) is in test_gateway_rfc6455.py, from a raw socket. Each client is skipped, with
the reason, where it cannot be had: `ws` is installed with npm under .dev on first use, Chromium is
Debian's `chromium` package."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import requests
from websockets.sync.client import ClientConnection, connect

from lib.config.env import Settings
from runtime.embedded import DEV_DIR
from runtime.worker_class import BoundedWebSocketProtocol
from tests.wsclient import gateway

NODE_DIR = DEV_DIR / "node-ws"  # npm install ws once per checkout (the registry is reachable here)
# What the gateway answers the permessage-deflate offer both clients make: no compression context
# kept on either side, or nothing while the protocol class declines it (compress_from = None).
DEFLATE = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
OFFER_ANSWER = DEFLATE if BoundedWebSocketProtocol.compress_from is not None else None

# One scenario with Node's ws: connect (offering permessage-deflate, as ws does by default, unless
# told "off"), authenticate, do the scenario, print what the client saw as one JSON line.
NODE_CLIENT = r"""
const WebSocket = require("ws");
const [url, token, scenario, deflate] = process.argv.slice(2);
const ws = new WebSocket(url, { perMessageDeflate: deflate !== "off" });
const seen = { errors: [], frames: [], pongs: [] };
const done = (extra) => {
  console.log(JSON.stringify({ ...seen, ...extra }));
  process.exit(0);
};
const fragments = (text, parts) => {
  const size = Math.ceil(text.length / parts);
  for (let i = 0; i < parts; i++) ws.send(text.slice(i * size, (i + 1) * size), { fin: i === parts - 1 });
};
const steps = {
  bare: () => ws.close(), // what close() sends in a browser or a Flutter app: no status code
  coded: () => ws.close(1000, "bye"),
  // {"type": "ping"} in three fragments, then a 12 KiB frame in four: both reassembled and answered.
  fragments: () => {
    fragments(JSON.stringify({ type: "ping" }), 3);
    fragments(JSON.stringify({ type: "message.send", client_message_id: "f", content: "x".repeat(12000) }), 4);
  },
  "fragments-over": () => fragments(JSON.stringify({ type: "ping", pad: "x".repeat(20000) }), 5),
  ping: () => ws.ping(Buffer.from("halo bestie")),
  utf8: () => ws.send(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), { binary: false }),
  oversize: () => ws.send("x".repeat(20000)),
  // with permessage-deflate, a compressed frame (ws compresses from 1 KiB), answered
  compressed: () => ws.send(JSON.stringify({ type: "ping", pad: "halo ".repeat(400) })),
  sigterm: () => console.log("ready"),
};
ws.on("upgrade", (res) => (seen.extensions = res.headers["sec-websocket-extensions"] || null));
ws.on("open", () => ws.send(JSON.stringify({ type: "auth", token })));
ws.on("message", (data) => {
  const frame = JSON.parse(data.toString());
  seen.frames.push(frame.type === "error" ? `error:${frame.data.code}` : frame.type);
  if (frame.type === "auth.ok") steps[scenario]();
  else if (scenario === "fragments" && seen.frames.length === 3) ws.close(1000);
  else if (scenario === "compressed") ws.close(1000);
});
ws.on("pong", (data) => {
  seen.pongs.push(data.toString());
  ws.close(1000);
});
ws.on("error", (err) => seen.errors.push(String(err.message)));
ws.on("close", (code) => done({ code }));
setTimeout(() => done({ timeout: true }), 8000);
"""

# What every scenario must show Node's ws: its close code, and the frames and pongs it received.
# 1005 is how ws reports locally a close frame without a code; with the bug it saw 1005 on the wire,
# raised "invalid status code 1005" and closed with 1002.
NODE_EXPECTED: dict[str, dict[str, Any]] = {
    "bare": {"code": 1005, "frames": ["auth.ok"]},
    "coded": {"code": 1000, "frames": ["auth.ok"]},
    # a message.send on a general socket is answered NO_SESSION: it arrived whole, 12 KiB of JSON
    "fragments": {"code": 1000, "frames": ["auth.ok", "pong", "error:NO_SESSION"]},
    "fragments-over": {"code": 1009, "frames": ["auth.ok"]},
    "ping": {"code": 1000, "frames": ["auth.ok"], "pongs": ["halo bestie"]},
    "utf8": {"code": 1007, "frames": ["auth.ok"]},
    "oversize": {"code": 1009, "frames": ["auth.ok"]},
    "compressed": {"code": 1000, "frames": ["auth.ok", "pong"]},
}


@pytest.fixture(scope="module")
def node_ws() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node and npm are not installed: the real-client tests need Node's ws")
    if not (NODE_DIR / "node_modules" / "ws").is_dir():
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        run = subprocess.run(
            [npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR), "ws@8"],
            capture_output=True,
            text=True,
            timeout=180,
        )
        if run.returncode != 0:
            pytest.skip(f"npm install ws failed (no registry?): {run.stderr[-200:]}")
    (NODE_DIR / "client.js").write_text(NODE_CLIENT)
    return NODE_DIR


def _node(node_ws: Path, url: str, token: str, scenario: str, deflate: str = "on") -> dict[str, Any]:
    run = subprocess.run(
        ["node", str(node_ws / "client.js"), url, token, scenario, deflate],
        cwd=node_ws,
        capture_output=True,
        text=True,
        timeout=30,
    )
    seen: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return seen


def _outcome(seen: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """What the client saw, in the shape of what it should have (errors and timeouts included)."""
    return {
        **{key: seen.get(key) for key in expected},
        "errors": seen.get("errors") or 0,
        "timeout": seen.get("timeout", False),
    }


def test_node_ws_sees_every_close_message_and_control_frame_as_rfc_6455_says(
    settings: Settings, anonymous, node_ws: Path
) -> None:
    token = anonymous()["access_token"]
    with gateway(settings) as (url, _):
        seen = {scenario: _node(node_ws, url, token, scenario) for scenario in NODE_EXPECTED}
        plain = _node(node_ws, url, token, "oversize", deflate="off")
    observed = {scenario: _outcome(seen[scenario], expected) for scenario, expected in NODE_EXPECTED.items()}
    wanted = {scenario: {**expected, "errors": 0, "timeout": False} for scenario, expected in NODE_EXPECTED.items()}
    assert observed == wanted
    # ws offers permessage-deflate by default.
    assert {s["extensions"] for s in seen.values()} == {OFFER_ANSWER}
    # Without permessage-deflate an oversize frame is refused by its header alone.
    assert (plain["code"], plain["extensions"], plain["errors"]) == (1009, None, [])


# --- headless Chromium, through the DevTools protocol ----------------------------------------


class Chromium:
    """A headless Chromium with one blank page; `evaluate` runs an expression there and awaits it."""

    def __init__(self, binary: str) -> None:
        self.profile = tempfile.TemporaryDirectory(prefix="chromium-")
        self.proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",  # root in a container has no user namespace for the sandbox
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-port=0",
                f"--user-data-dir={self.profile.name}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.page: ClientConnection | None = None
        self.stack = ExitStack()
        self.calls = 0
        port_file = Path(self.profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"chromium did not start (exit {self.proc.poll()})")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        targets = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(t for t in targets if t["type"] == "page")
        self.page = self.stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10))

    def evaluate(self, expression: str, timeout: float = 20) -> Any:
        assert self.page is not None
        self.calls += 1
        params = {"expression": expression, "awaitPromise": True, "returnByValue": True}
        self.page.send(json.dumps({"id": self.calls, "method": "Runtime.evaluate", "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            answer = json.loads(self.page.recv(timeout=max(0.1, deadline - time.monotonic())))
            if answer.get("id") == self.calls:
                result = answer["result"]
                if "exceptionDetails" in result:
                    raise AssertionError(result["exceptionDetails"])
                return result["result"].get("value")

    def close(self) -> None:
        self.stack.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.profile.cleanup()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    binary = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if binary is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium): the browser tests need it")
    try:
        browser = Chromium(binary)
    except (RuntimeError, OSError, requests.RequestException, StopIteration) as exc:
        pytest.skip(f"headless chromium would not start here: {exc}")
    yield browser
    browser.close()


# Opens window.ws, authenticates; resolves when auth.ok arrives. window.wsClosed resolves with how the
# page saw the close: its code, whether it was clean, how many `error` events fired.
BROWSER_OPEN = """
new Promise((ready) => {
  const ws = new WebSocket(%(url)s);
  window.ws = ws;
  window.seen = { frames: [], errors: 0 };
  window.wsClosed = new Promise((resolve) => {
    ws.onclose = (e) => resolve({ ...window.seen, code: e.code, clean: e.wasClean, extensions: ws.extensions });
  });
  ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token: %(token)s }));
  ws.onerror = () => window.seen.errors++;
  ws.onmessage = (e) => {
    const frame = JSON.parse(e.data);
    window.seen.frames.push(frame.type === "error" ? "error:" + frame.data.code : frame.type);
    if (frame.type === "auth.ok") ready(true);
  };
  setTimeout(() => ready(false), 8000);
})
"""
BROWSER_CLOSED = "Promise.race([window.wsClosed, new Promise((r) => setTimeout(() => r({ timeout: true }), 8000))])"
BROWSER_STEPS = {
    "bare": "ws.close()",
    "coded": "ws.close(1000, 'bye')",
    # a message.send on a general socket, answered NO_SESSION, then closed by the page
    "chat": "ws.send(JSON.stringify({ type: 'message.send', client_message_id: 'c', content: 'halo '.repeat(2400) }));"
    "ws.addEventListener('message', () => ws.close(1000))",
    "oversize": "ws.send('x'.repeat(20000))",
}
BROWSER_EXPECTED = {
    "bare": {"code": 1005, "clean": True, "errors": 0, "frames": ["auth.ok"]},
    "coded": {"code": 1000, "clean": True, "errors": 0, "frames": ["auth.ok"]},
    "chat": {"code": 1000, "clean": True, "errors": 0, "frames": ["auth.ok", "error:NO_SESSION"]},
    "oversize": {"code": 1009, "clean": True, "errors": 0, "frames": ["auth.ok"]},
}


def _open_in_browser(chromium: Chromium, url: str, token: str) -> None:
    assert chromium.evaluate(BROWSER_OPEN % {"url": json.dumps(url), "token": json.dumps(token)}) is True


def test_chromium_sees_every_close_as_rfc_6455_says(settings: Settings, anonymous, chromium: Chromium) -> None:
    token = anonymous()["access_token"]
    seen = {}
    with gateway(settings) as (url, _):
        for scenario, step in BROWSER_STEPS.items():
            _open_in_browser(chromium, url, token)
            chromium.evaluate(step)
            seen[scenario] = chromium.evaluate(BROWSER_CLOSED)
    assert {s: {k: seen[s].get(k) for k in BROWSER_EXPECTED[s]} for s in seen} == BROWSER_EXPECTED
    # Chromium offers permessage-deflate too (when it is accepted, Chromium compresses every frame:
    # the oversize one above is then refused by its inflated size).
    assert {s["extensions"] or None for s in seen.values()} == {OFFER_ANSWER}


def test_sigterm_is_seen_by_node_ws_as_1001(settings: Settings, anonymous, node_ws: Path) -> None:
    token = anonymous()["access_token"]
    with gateway(settings) as (url, proc):
        node = subprocess.Popen(
            ["node", str(node_ws / "client.js"), url, token, "sigterm"], cwd=node_ws, stdout=subprocess.PIPE, text=True
        )
        assert node.stdout is not None
        assert node.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        out, _ = node.communicate(timeout=20)
        proc.wait(timeout=20)
    seen = json.loads(out.strip().splitlines()[-1])
    assert (seen["code"], seen["errors"], seen.get("timeout")) == (1001, [], None), seen


def test_sigterm_is_seen_by_chromium_as_1001(settings: Settings, anonymous, chromium: Chromium) -> None:
    token = anonymous()["access_token"]
    with gateway(settings) as (url, proc):
        _open_in_browser(chromium, url, token)
        proc.send_signal(signal.SIGTERM)
        seen = chromium.evaluate(BROWSER_CLOSED)
        proc.wait(timeout=20)
    assert (seen.get("code"), seen.get("clean"), seen.get("errors")) == (1001, True, 0), seen
