"""What a confirmed payment buys: a session payment opens its search, an extension payment adds
its minutes. Called once by whoever confirmed the payment (the webhook, reconciliation) and again
by the re-emit job for any the first call missed, so both paths are idempotent."""

from __future__ import annotations

import redis

from lib.chat.events import ChatEvents
from lib.chat.extensions import apply_payment
from lib.chat.pairing import start_pairing
from lib.config.app import AppConfig
from lib.db import Database


def deliver(
    db: Database, valkey: redis.Redis, config: AppConfig, events: ChatEvents, payment_request_id: str
) -> str | None:
    """The paying customer's id (None for an unknown request)."""
    row = db.fetch_one(
        "SELECT kind, customer_id FROM payment_requests WHERE id = %(payment_request_id)s",
        {"payment_request_id": payment_request_id},
    )
    if row is None:
        return None
    if row["kind"] == "extension":
        apply_payment(db, valkey, events, payment_request_id)
    else:
        start_pairing(db, valkey, config, events, payment_request_id)
    return str(row["customer_id"])
