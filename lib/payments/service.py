"""Payments, the domain service handlers and jobs call (`ctx.services.payments`): the parts money
needs, held once (runtime/container.py builds it), and one thin method per operation delegating to
the lib/payments functions, which stay the rules (and what lib/tests call directly)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from lib.config.app import AppConfig
from lib.config.env import Settings
from lib.db import Database
from lib.kept import Kept
from lib.payments import refunds, requests, sweeps, webhook
from lib.payments.events import PaymentEvents
from lib.payments.gateway import Gateway
from lib.ratelimit import RateLimiter


@dataclass(frozen=True, kw_only=True, eq=False)
class Payments:
    db: Database
    valkey: redis.Redis
    config: AppConfig
    settings: Settings
    gateway: Gateway
    events: PaymentEvents
    limiter: RateLimiter
    views: Kept[dict[str, Any] | None]  # the payment requests the waiting screen polls

    # Payment requests (lib/payments/requests.py)

    def create_request(self, customer_id: str, body: dict[str, Any], idempotency_key: str | None) -> dict[str, Any]:
        """Open a payment request and its invoice (PAYMENT_REQUESTS_PER_HOUR per customer)."""
        return requests.create_request(
            self.db,
            self.valkey,
            self.config,
            self.gateway,
            customer_id,
            body,
            idempotency_key,
            limiter=self.limiter,
            per_hour=self.settings.payment_requests_per_hour,
        )

    def request_of(self, customer_id: str, request_id: str) -> dict[str, Any]:
        """One of the customer's payment requests (404 for anyone else's), from the kept views."""
        return requests.owned_doc(self.views, request_id, customer_id)

    def abandon(self, customer_id: str, request_id: str) -> dict[str, Any]:
        """Give up on a pending request; this process answers its next poll with the change at once."""
        doc = requests.abandon(self.db, request_id, customer_id)
        self.views.forget(request_id)
        return doc

    # Xendit's callback (lib/payments/webhook.py)

    def callback(
        self, raw: bytes, token: str | None, client_ip: str, *, limited: bool = True
    ) -> tuple[int, dict[str, Any]]:
        """Handle an invoice callback: (status, body). `limited`: refused callbacks count against
        WEBHOOK_REFUSED_PER_MINUTE for the IP."""
        return webhook.handle_callback(
            self.db, self.events, self.settings, raw, token, client_ip, limiter=self.limiter if limited else None
        )

    # Sweeps, the worker's jobs (lib/payments/sweeps.py)

    def expire_overdue(self) -> list[str]:
        """Expire pending payment requests past their deadline (and orphans without an invoice)."""
        return sweeps.expire_overdue(self.db)

    def recover_invoices(self) -> dict[str, str]:
        """Find the invoices of payment requests whose create call got no answer from Xendit."""
        return sweeps.recover_invoices(self.db, self.gateway)

    def reconcile(self) -> dict[str, str]:
        """Poll Xendit for invoices that may still be paid whose callback may have been lost."""
        return sweeps.reconcile(self.db, self.gateway, self.events)

    def close_invoices(self) -> dict[str, str]:
        """Close at Xendit the invoices of requests we gave up on (abandoned, expired, superseded, lapsed)."""
        return sweeps.close_invoices(self.db, self.gateway, self.events)

    def reemit_unpaired(self) -> list[str]:
        """Emit the confirmation again for paid requests that no session has consumed yet."""
        return sweeps.reemit_unpaired(self.db, self.events)

    # Refunds (lib/payments/refunds.py)

    def mark_refunded(self, refund_id: str, reference: str, by: str) -> dict[str, Any]:
        """Record that a refund due was sent back, with the transfer's reference."""
        return refunds.mark_refunded(self.db, refund_id, reference, by)
