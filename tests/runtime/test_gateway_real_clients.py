"""The gateway against a WebSocket client we did not write: Node's `ws`, the most used one. Our own
test client accepted a close frame carrying 1005, which RFC 6455 (7.4.1) forbids on the wire and
every real client rejects. Skipped, with the reason, where node or the package cannot be had."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from lib.config.env import Settings
from runtime.embedded import DEV_DIR
from tests.wsclient import gateway

NODE_DIR = DEV_DIR / "node-ws"  # npm install ws once per checkout (the registry is reachable here)

# Connects, authenticates, then does what `close()` does in a browser or a Flutter app: a close
# frame without a status code. Prints how the client saw the close.
SCRIPT = r"""
const WebSocket = require("ws");
const [url, token, how] = process.argv.slice(2);
const ws = new WebSocket(url);
const seen = { errors: [] };
ws.on("open", () => ws.send(JSON.stringify({ type: "auth", token })));
ws.on("message", (data) => {
  const frame = JSON.parse(data.toString());
  if (frame.type === "auth.ok") {
    if (how === "bare") ws.close();
    else ws.close(1000, "bye");
  }
});
ws.on("error", (err) => seen.errors.push(String(err.message)));
ws.on("close", (code, reason) => {
  seen.code = code;
  seen.reason = reason.toString();
  console.log(JSON.stringify(seen));
  process.exit(0);
});
setTimeout(() => { console.log(JSON.stringify({ timeout: true, ...seen })); process.exit(0); }, 8000);
"""


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
    (NODE_DIR / "close.js").write_text(SCRIPT)
    return NODE_DIR


@pytest.mark.parametrize(("how", "expected"), [("bare", 1005), ("coded", 1000)])
def test_a_client_close_is_answered_as_rfc_6455_says(
    settings: Settings, anonymous, node_ws: Path, how: str, expected: int
) -> None:
    token = anonymous()["access_token"]
    with gateway(settings) as (url, _):
        run = subprocess.run(
            ["node", str(node_ws / "close.js"), url, token, how],
            cwd=node_ws,
            capture_output=True,
            text=True,
            timeout=30,
        )
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    # A close without a code is answered without one (ws reports that locally as 1005); with the
    # bug, ws saw 1005 on the wire, raised "invalid status code 1005" and closed with 1002.
    assert seen.get("errors") == [] and not seen.get("timeout"), seen
    assert seen["code"] == expected, seen
