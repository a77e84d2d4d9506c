"""The `payment confirmed` domain event: in-process hooks plus a bus message for other processes.

Emitted by the one caller whose conditional UPDATE confirmed the payment; the worker re-emits for
confirmed requests that still have no session, so consumers (pairing) must be idempotent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from lib.bus import Bus

log = logging.getLogger(__name__)

CHANNEL = "payments:confirmed"
Hook = Callable[[str], None]


class PaymentEvents:
    def __init__(self, bus: Bus | None) -> None:
        self._bus = bus
        self._hooks: list[Hook] = []
        self._lock = threading.Lock()

    def on_confirmed(self, hook: Hook) -> None:
        with self._lock:
            self._hooks.append(hook)

    def confirmed(self, payment_request_id: str) -> None:
        for hook in list(self._hooks):
            try:
                hook(payment_request_id)
            except Exception:  # one broken consumer must not stop the others or the webhook
                log.exception("payment-confirmed hook failed for %s", payment_request_id)
        if self._bus is not None:
            self._bus.publish(CHANNEL, payment_request_id)
