"""Fakes of outside services that speak real HTTP on loopback (never our own database or Valkey)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


class JwksServer:
    """Google's or Apple's key endpoint: serves the public halves of keys it can sign with."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.fetches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.fetches += 1
                body = json.dumps({"keys": [server.public_jwk(kid) for kid in server.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/keys"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def add_key(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def public_jwk(self, kid: str) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
        return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}

    def sign(self, claims: dict[str, Any], kid: str, alg: str = "RS256") -> str:
        return jwt.encode(claims, self.keys[kid], algorithm=alg, headers={"kid": kid})

    @contextmanager
    def running(self) -> Iterator[JwksServer]:
        self._thread.start()
        try:
            yield self
        finally:
            self._httpd.shutdown()
            self._httpd.server_close()


class FakeXendit:
    """Xendit's Invoice API on loopback: records invoices, serves GET, can fail or be slow."""

    def __init__(self, secret_key: str) -> None:
        import base64

        self.expected_auth = "Basic " + base64.b64encode(f"{secret_key}:".encode()).decode()
        self.invoices: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        self.auth_seen: list[str | None] = []
        self.fail_next = 0  # answer 500 to this many next requests
        self.delay = 0.0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _gate(self) -> bool:
                import time

                if server.delay:
                    time.sleep(server.delay)
                server.auth_seen.append(self.headers.get("Authorization"))
                if self.headers.get("Authorization") != server.expected_auth:
                    self._reply(401, {"error_code": "INVALID_API_KEY"})
                    return False
                with server._lock:
                    if server.fail_next:
                        server.fail_next -= 1
                        self._reply(500, {"error_code": "SERVER_ERROR"})
                        return False
                return True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length))
                if not self._gate():
                    return
                with server._lock:
                    invoice_id = f"inv_{len(server.invoices) + 1:04d}"
                    invoice = {
                        "id": invoice_id,
                        "external_id": body["external_id"],
                        "status": "PENDING",
                        "amount": body["amount"],
                        "currency": body["currency"],
                        "invoice_url": f"https://checkout.xendit.test/web/{invoice_id}",
                        "metadata": body.get("metadata"),
                    }
                    server.invoices[invoice_id] = invoice
                    server.created.append(body)
                self._reply(200, invoice)

            def do_GET(self) -> None:
                if not self._gate():
                    return
                invoice = server.invoices.get(self.path.rsplit("/", 1)[-1])
                self._reply(200, invoice) if invoice else self._reply(404, {"error_code": "INVOICE_NOT_FOUND"})

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def set_status(self, invoice_id: str, status: str, **extra: Any) -> None:
        self.invoices[invoice_id].update({"status": status, **extra})

    @contextmanager
    def running(self) -> Iterator[FakeXendit]:
        self._thread.start()
        try:
            yield self
        finally:
            self._httpd.shutdown()
            self._httpd.server_close()
