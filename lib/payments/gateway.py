"""Payment gateways: Xendit's Invoice API over `requests`, or a simulated one for development."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import requests
from urllib3.exceptions import NewConnectionError

from lib.config.env import Settings
from lib.errors import BadGateway

log = logging.getLogger(__name__)

APP_METADATA = {"app": "halobestie_v2"}
CONNECT_TIMEOUT = 3.05


@dataclass(frozen=True)
class Invoice:
    id: str
    invoice_url: str
    status: str
    raw: dict[str, Any]

    @property
    def expires_at(self) -> datetime | None:
        """Xendit's own expiry of the invoice (`expiry_date`), when it says."""
        value = self.raw.get("expiry_date")
        if not isinstance(value, str):
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else None

    @property
    def paid(self) -> bool:
        return self.status.upper() in ("PAID", "SETTLED")


class GatewayError(BadGateway):
    code, message = "PAYMENT_GATEWAY_ERROR", "The payment provider could not be reached"


class InvoiceOutcomeUnknown(GatewayError):
    """The create request reached Xendit but no answer came back: an invoice may exist. Never
    create again; look it up by our external_id instead."""


class GatewayRefused(GatewayError):
    """Xendit answered with a 4xx: it understood and said no (e.g. expiring an invoice that is paid
    or expired already). Unlike a timeout or a 5xx, asking again will not change the answer."""

    def __init__(self, status: int, error_code: str | None) -> None:
        super().__init__(f"The payment provider refused the request ({status})")
        self.http_status, self.error_code = status, error_code


class Gateway(Protocol):
    def create_invoice(self, *, external_id: str, amount: int, description: str, duration_seconds: int) -> Invoice: ...

    def get_invoice(self, invoice_id: str) -> Invoice: ...

    def find_invoice(self, external_id: str) -> Invoice | None: ...

    def expire_invoice(self, invoice_id: str) -> Invoice: ...


class XenditGateway:
    """POST /v2/invoices and GET /v2/invoices/{id}, Basic auth with the secret key.

    Retries: a GET is retried on any transport failure; a POST only when the connection was never
    made (nothing reached Xendit), because a second POST could create a second invoice.
    """

    def __init__(
        self,
        base_url: str,
        secret_key: str,
        *,
        success_url: str = "",
        failure_url: str = "",
        attempts: int = 3,
        read_timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = requests.Session()
        self._session.auth = (secret_key, "")
        self._success_url, self._failure_url = success_url, failure_url
        self._attempts = attempts
        self._timeout = (CONNECT_TIMEOUT, read_timeout)

    def create_invoice(self, *, external_id: str, amount: int, description: str, duration_seconds: int) -> Invoice:
        body: dict[str, Any] = {
            "external_id": external_id,
            "amount": amount,
            "currency": "IDR",
            "description": description,
            "invoice_duration": duration_seconds,
            "metadata": APP_METADATA,
        }
        if self._success_url:
            body["success_redirect_url"] = self._success_url
        if self._failure_url:
            body["failure_redirect_url"] = self._failure_url
        return _invoice(self._call("POST", "/v2/invoices", idempotent=False, json=body))

    def get_invoice(self, invoice_id: str) -> Invoice:
        return _invoice(self._call("GET", f"/v2/invoices/{invoice_id}", idempotent=True))

    def expire_invoice(self, invoice_id: str) -> Invoice:
        """POST /invoices/{id}/expire!: the invoice can no longer be paid. Expiring twice changes
        nothing, so a transport failure is retried; one attempt only, because the closure job that
        calls it retries with a backoff of its own (and a hanging Xendit holds one tick, not three)."""
        return _invoice(self._call("POST", f"/invoices/{invoice_id}/expire!", idempotent=True, attempts=1))

    def find_invoice(self, external_id: str) -> Invoice | None:
        """The invoice created for our external_id, if any (GET /v2/invoices?external_id=, a list)."""
        found = self._call("GET", "/v2/invoices", idempotent=True, params={"external_id": external_id})
        if not isinstance(found, list):
            raise GatewayError("The payment provider answered something unexpected")
        matching = [i for i in found if isinstance(i, dict) and i.get("external_id") == external_id]
        return _invoice(matching[0]) if matching else None

    def _call(self, method: str, path: str, *, idempotent: bool, attempts: int | None = None, **kwargs: Any) -> Any:
        last: Exception | None = None
        attempts = attempts or self._attempts
        for attempt in range(attempts):
            try:
                response = self._session.request(method, self.base_url + path, timeout=self._timeout, **kwargs)
            except requests.RequestException as exc:
                last = exc
                if not (idempotent or _never_sent(exc)):
                    log.error("xendit %s %s: no answer after sending: %s", method, path, type(exc).__name__)
                    raise InvoiceOutcomeUnknown() from exc
            else:
                if response.status_code >= 500 and idempotent and attempt + 1 < attempts:
                    last = GatewayError(f"HTTP {response.status_code}")
                else:
                    return _body(method, path, response)
            time.sleep(0.2 * (attempt + 1))
        log.error("xendit %s %s failed after %d attempts: %s", method, path, attempts, type(last).__name__)
        raise GatewayError() from last


def _body(method: str, path: str, response: requests.Response) -> Any:
    if response.status_code >= 500:
        log.error("xendit %s %s answered %s", method, path, response.status_code)
        raise GatewayError(f"The payment provider failed the request ({response.status_code})")
    if response.status_code >= 400:
        log.warning("xendit %s %s answered %s", method, path, response.status_code)
        raise GatewayRefused(response.status_code, _error_code(response))
    try:
        return response.json()
    except ValueError as exc:
        raise GatewayError("The payment provider answered something unexpected") from exc


def _error_code(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("error_code") if isinstance(body, dict) else None
    return str(code)[:60] if code is not None else None


def _invoice(data: Any) -> Invoice:
    try:
        return Invoice(str(data["id"]), str(data.get("invoice_url", "")), str(data.get("status", "")), data)
    except (KeyError, TypeError, AttributeError) as exc:
        raise GatewayError("The payment provider answered something unexpected") from exc


class SimulatedGateway:
    """XENDIT_ENABLED=false: invoices exist only here; POST /internal/_test/payments/{id}/confirm
    pays one through the real webhook path."""

    def __init__(self, public_port: int) -> None:
        self._base = f"http://127.0.0.1:{public_port}/simulated-invoices"

    def create_invoice(self, *, external_id: str, amount: int, description: str, duration_seconds: int) -> Invoice:
        invoice_id = f"sim-{uuid.uuid4().hex[:24]}"
        expiry = datetime.now(UTC) + timedelta(seconds=duration_seconds)
        raw = {
            "id": invoice_id,
            "external_id": external_id,
            "amount": amount,
            "currency": "IDR",
            "status": "PENDING",
            "expiry_date": expiry.isoformat(),
        }
        return Invoice(invoice_id, f"{self._base}/{invoice_id}", "PENDING", raw)

    def get_invoice(self, invoice_id: str) -> Invoice:
        return Invoice(invoice_id, f"{self._base}/{invoice_id}", "PENDING", {"id": invoice_id, "status": "PENDING"})

    def expire_invoice(self, invoice_id: str) -> Invoice:
        return Invoice(invoice_id, f"{self._base}/{invoice_id}", "EXPIRED", {"id": invoice_id, "status": "EXPIRED"})

    def find_invoice(self, external_id: str) -> Invoice | None:
        return None  # creation never times out here, so nothing is ever looked for


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached Xendit (no connection was made)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(exc, requests.ConnectionError) and isinstance(reason, NewConnectionError)


def make_gateway(settings: Settings) -> Gateway:
    if settings.xendit_enabled:
        return XenditGateway(
            settings.xendit_base_url,
            settings.xendit_secret_key,
            success_url=settings.xendit_success_redirect_url,
            failure_url=settings.xendit_failure_redirect_url,
            read_timeout=settings.xendit_timeout_seconds,
        )
    return SimulatedGateway(settings.public_port)
