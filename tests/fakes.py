"""Fakes of outside services that speak real HTTP on loopback (never our own database or Valkey)."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


class JsonHandler(BaseHTTPRequestHandler):
    """Request handler base: JSON replies, no console noise."""

    def reply_list(self, body: list[Any]) -> None:
        self._send(200, json.dumps(body).encode())

    def reply(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, json.dumps(body).encode())

    def _send(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


class LoopbackServer:
    """A threaded HTTP server on a free loopback port, started by `with server.running():`."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @contextmanager
    def running(self) -> Iterator[Self]:
        self._thread.start()
        try:
            yield self
        finally:
            self._httpd.shutdown()
            self._httpd.server_close()


class JwksServer(LoopbackServer):
    """Google's or Apple's key endpoint: serves the public halves of keys it can sign with."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.fetches = 0
        server = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:
                server.fetches += 1
                self.reply(200, {"keys": [server.public_jwk(kid) for kid in server.keys]})

        super().__init__(Handler)
        self.url = self.base_url + "/keys"

    def add_key(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def public_jwk(self, kid: str) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
        return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}

    def sign(self, claims: dict[str, Any], kid: str, alg: str = "RS256") -> str:
        return jwt.encode(claims, self.keys[kid], algorithm=alg, headers={"kid": kid})


class FakeXendit(LoopbackServer):
    """Xendit's Invoice API on loopback: records invoices, serves GET, expires them
    (`POST /invoices/{id}/expire!`: a pending one becomes EXPIRED; a paid or expired one answers 404
    INVOICE_NOT_FOUND_ERROR), can fail or be slow. `pay()` is the customer paying at the checkout:
    refused for an invoice that is not pending, as Xendit's checkout refuses it."""

    def __init__(self, secret_key: str) -> None:
        self.expected_auth = "Basic " + base64.b64encode(f"{secret_key}:".encode()).decode()
        self.invoices: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        self.auth_seen: list[str | None] = []
        self.fail_next = 0  # answer 500 to this many next requests
        self.delay = 0.0  # wait this long before doing anything (a hanging Xendit)
        self.started = 0  # requests received, counted before any delay
        self.create_answer_delay = 0.0  # create the invoice, then wait this long before answering
        self.lookups_fail = False  # GETs answer 503 (Xendit's read side is down)
        self.expired: list[str] = []  # invoice ids expired through the API, in order
        self.expire_answer_delay = 0.0  # expire the invoice, then wait this long before answering
        self._lock = threading.Lock()
        server = self

        class Handler(JsonHandler):
            def _gate(self) -> bool:
                server.started += 1
                if server.delay:
                    time.sleep(server.delay)
                server.auth_seen.append(self.headers.get("Authorization"))
                if self.headers.get("Authorization") != server.expected_auth:
                    self.reply(401, {"error_code": "INVALID_API_KEY"})
                    return False
                with server._lock:
                    if server.fail_next:
                        server.fail_next -= 1
                        self.reply(500, {"error_code": "SERVER_ERROR"})
                        return False
                return True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if not self._gate():
                    return
                if self.path.startswith("/invoices/") and self.path.endswith("/expire!"):
                    self._expire(self.path.split("/")[2])
                    return
                body = json.loads(raw)
                with server._lock:
                    invoice_id = f"inv_{len(server.invoices) + 1:04d}"
                    now = datetime.now(UTC)
                    invoice = {
                        "id": invoice_id,
                        "external_id": body["external_id"],
                        "status": "PENDING",
                        "amount": body["amount"],
                        "currency": body["currency"],
                        "invoice_url": f"https://checkout.xendit.test/web/{invoice_id}",
                        "expiry_date": _iso(now + timedelta(seconds=body.get("invoice_duration", 86400))),
                        "created": _iso(now),
                        "metadata": body.get("metadata"),
                    }
                    server.invoices[invoice_id] = invoice
                    server.created.append(body)
                if server.create_answer_delay:
                    time.sleep(server.create_answer_delay)
                self.reply(200, invoice)

            def _expire(self, invoice_id: str) -> None:
                with server._lock:
                    invoice = server.invoices.get(invoice_id)
                    if invoice is None or invoice["status"] != "PENDING":
                        found = None
                    else:
                        invoice.update({"status": "EXPIRED", "updated": _iso(datetime.now(UTC))})
                        server.expired.append(invoice_id)
                        found = dict(invoice)
                if found is None:
                    self.reply(404, {"error_code": "INVOICE_NOT_FOUND_ERROR", "message": "Could not find invoice"})
                    return
                if server.expire_answer_delay:
                    time.sleep(server.expire_answer_delay)
                self.reply(200, found)

            def do_GET(self) -> None:
                if not self._gate():
                    return
                if server.lookups_fail:
                    self.reply(503, {"error_code": "SERVICE_UNAVAILABLE"})
                    return
                path, _, query = self.path.partition("?")
                if path == "/v2/invoices":
                    wanted = parse_qs(query).get("external_id", [""])[0]
                    self.reply_list([i for i in server.invoices.values() if i["external_id"] == wanted])
                    return
                invoice = server.invoices.get(path.rsplit("/", 1)[-1])
                if invoice:
                    self.reply(200, invoice)
                else:
                    self.reply(404, {"error_code": "INVOICE_NOT_FOUND"})

        super().__init__(Handler)
        self.url = self.base_url

    def set_status(self, invoice_id: str, status: str, **extra: Any) -> None:
        self.invoices[invoice_id].update({"status": status, **extra})

    def invoice_of(self, external_id: str) -> dict[str, Any]:
        found = [i for i in self.invoices.values() if i["external_id"] == external_id]
        assert len(found) == 1, f"{len(found)} invoices for {external_id}"
        return found[0]

    def pay(self, external_id: str, status: str = "PAID", **extra: Any) -> dict[str, Any]:
        """The customer pays the invoice of this request at Xendit's checkout; the PAID callback
        body it would send (post it, or lose it). An expired invoice cannot be paid."""
        with self._lock:
            invoice = self.invoice_of(external_id)
            if invoice["status"] != "PENDING":
                raise InvoiceNotPayable(f"{invoice['id']} is {invoice['status']}")
            invoice.update(
                {
                    "status": status,
                    "paid_amount": invoice["amount"],
                    "paid_at": _iso(datetime.now(UTC)),
                    "payment_method": "QR_CODE",
                    "payment_channel": "QRIS",
                    **extra,
                }
            )
            return dict(invoice)


class InvoiceNotPayable(Exception):
    """Xendit's checkout refuses to take money for an invoice that is paid or expired."""


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FakeFcm(LoopbackServer):
    """Google's OAuth token endpoint and FCM's v1 send API on loopback, for the real firebase-admin.

    `service_account(path)` writes a service-account file whose token_uri points here; the client
    signs its JWT assertion with that file's key and gets a token back; sends are recorded.
    """

    PROJECT = "halobestie-test"

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.token_requests = 0
        self.unregistered: set[str] = set()  # device tokens FCM reports as UNREGISTERED
        self._lock = threading.Lock()
        server = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/token":
                    server.token_requests += 1
                    self.reply(200, {"access_token": "fake-oauth-token", "expires_in": 3600, "token_type": "Bearer"})
                    return
                if (
                    not self.path.endswith("/messages:send")
                    or self.headers.get("Authorization") != "Bearer fake-oauth-token"
                ):
                    self.reply(401, {"error": {"code": 401, "status": "UNAUTHENTICATED", "message": "no token"}})
                    return
                message = json.loads(body)["message"]
                if message.get("token") in server.unregistered:
                    self.reply(
                        404,
                        {
                            "error": {
                                "code": 404,
                                "message": "Requested entity was not found.",
                                "status": "NOT_FOUND",
                                "details": [
                                    {
                                        "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                                        "errorCode": "UNREGISTERED",
                                    }
                                ],
                            }
                        },
                    )
                    return
                with server._lock:
                    server.sent.append(message)
                self.reply(200, {"name": f"projects/{server.PROJECT}/messages/{len(server.sent)}"})

        super().__init__(Handler)
        self.url = self.base_url

    def service_account(self, path: Any) -> str:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        info = {
            "type": "service_account",
            "project_id": self.PROJECT,
            "private_key_id": "test-key",
            "private_key": pem,
            "client_email": f"push@{self.PROJECT}.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": f"{self.base_url}/token",
        }
        path.write_text(json.dumps(info))
        return str(path)


class FakeTwilioVerify(LoopbackServer):
    """Twilio Verify v2 on loopback: POST /v2/Services/{sid}/Verifications and /VerificationCheck,
    form-encoded, Basic auth, Twilio's JSON errors ({code, message, more_info, status}).

    One pending verification per number, as Twilio keeps it: a send while one is pending sends its
    code again; an approved code is forgotten; the 6th check of a verification is 429 60202. Codes
    "sent" are in `sent` (what the phone would receive). Failures on demand: `fail_next` (5xx),
    `refuse_next` (a 4xx with a Twilio code), `delay` (sleep before answering), `answer_delay`
    (do the work, then sleep: a timeout after sending)."""

    MAX_CHECKS = 5

    def __init__(self, account_sid: str, auth_token: str, service_sid: str) -> None:
        self.expected_auth = "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self.service_sid = service_sid
        self.pending: dict[str, dict[str, Any]] = {}  # by number
        self.sent: list[dict[str, str]] = []  # {"to", "channel", "code"}
        self.requests: list[dict[str, Any]] = []  # {"path", "form", "auth"}: what reached the fake
        self.checks = 0
        self.fail_next = 0
        self.fail_status = 503
        self.refuse_next: tuple[int, int] | None = None  # (HTTP status, Twilio code) for the next request
        self.delay = 0.0
        self.answer_delay = 0.0
        self._lock = threading.Lock()
        server = self

        class Handler(JsonHandler):
            def error(self, status: int, code: int, message: str) -> None:
                more = f"https://www.twilio.com/docs/errors/{code}"
                self.reply(status, {"code": code, "message": message, "more_info": more, "status": status})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                server.requests.append({"path": self.path, "form": form, "auth": self.headers.get("Authorization")})
                if server.delay:
                    time.sleep(server.delay)
                if self.headers.get("Authorization") != server.expected_auth:
                    self.error(401, 20003, "Authenticate")
                    return
                with server._lock:
                    if server.fail_next:
                        server.fail_next -= 1
                        self.error(server.fail_status, 20500, "Internal Server Error")
                        return
                    refusal, server.refuse_next = server.refuse_next, None
                if refusal:
                    self.error(refusal[0], refusal[1], "Refused")
                    return
                prefix = f"/v2/Services/{server.service_sid}/"
                if self.path == prefix + "Verifications":
                    status, body = server.start(form)
                elif self.path == prefix + "VerificationCheck":
                    status, body = server.check(form)
                else:
                    status, body = 404, {"code": 20404, "message": "The requested resource was not found"}
                if server.answer_delay:
                    time.sleep(server.answer_delay)
                if "code" in body:
                    self.error(status, body["code"], body["message"])
                else:
                    self.reply(status, body)

        super().__init__(Handler)
        self.url = self.base_url
        # A reply written after the client stopped waiting (the timeout cases) is no test failure.
        self._httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]

    def start(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        to, channel = form.get("To", ""), form.get("Channel", "")
        if not to.startswith("+") or channel not in ("sms", "whatsapp", "call", "email"):
            return 400, {"code": 60200, "message": "Invalid parameter"}
        with self._lock:
            verification = self.pending.get(to)
            if verification is None:
                sid = "VE" + secrets.token_hex(16)
                verification = {"sid": sid, "code": f"{secrets.randbelow(1_000_000):06d}", "checks": 0}
                self.pending[to] = verification
            self.sent.append({"to": to, "channel": channel, "code": verification["code"]})
        return 201, self._resource(verification, to, channel, "pending")

    def check(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        to, code = form.get("To", ""), form.get("Code", "")
        with self._lock:
            self.checks += 1
            verification = self.pending.get(to)
            if verification is None:
                return 404, {"code": 20404, "message": "The requested resource was not found"}
            if verification["checks"] >= self.MAX_CHECKS:
                return 429, {"code": 60202, "message": "Max check attempts reached"}
            verification["checks"] += 1
            if code != verification["code"]:
                return 200, self._resource(verification, to, "sms", "pending")
            del self.pending[to]
        return 200, self._resource(verification, to, "sms", "approved")

    def _resource(self, verification: dict[str, Any], to: str, channel: str, status: str) -> dict[str, Any]:
        return {
            "sid": verification["sid"],
            "service_sid": self.service_sid,
            "to": to,
            "channel": channel,
            "status": status,
            "valid": status == "approved",
        }

    def last_code(self, to: str) -> str:
        codes = [s["code"] for s in self.sent if s["to"] == to]
        assert codes, "no code was sent"
        return codes[-1]
