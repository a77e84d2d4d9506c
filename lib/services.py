"""The per-process parts a handler or a job may use, handed over through ctx (ARCHITECTURE.md,
"The handler contract"). A plain container: runtime/container.py builds it after the fork, and lib
functions take the specific parts they need, never the whole. Handlers call the domain services
(`chat`, `payments`, `presence`, `accounts`), which hold the parts their operations need; the
low-level parts stay for a handler's own reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from lib.auth.otp_providers import OtpProvider
from lib.auth.revocation import RevocationList
from lib.auth.service import Accounts
from lib.auth.sessions import RefreshChain
from lib.auth.social import JwksCache
from lib.auth.tokens import VerifiedTokens
from lib.bus import Bus
from lib.chat.events import ChatEvents
from lib.chat.service import Chat
from lib.config.app import AppConfig
from lib.config.env import Settings
from lib.db import Database
from lib.kept import Changes, Kept
from lib.payments.events import PaymentEvents
from lib.payments.gateway import Gateway
from lib.payments.service import Payments
from lib.presence.availability import AvailabilityCache
from lib.presence.beats import Heartbeats
from lib.presence.service import Presence
from lib.push import Notifier
from lib.ratelimit import RateLimiter
from lib.transcripts import Transcripts


@dataclass(frozen=True, kw_only=True, eq=False)
class Services:
    settings: Settings
    db: Database
    valkey: redis.Redis
    bus: Bus
    config: AppConfig
    revocations: RevocationList
    rate_limiter: RateLimiter
    verified_tokens: VerifiedTokens
    refresh_chain: RefreshChain
    google_jwks: JwksCache
    apple_jwks: JwksCache
    availability_cache: AvailabilityCache
    heartbeats: Heartbeats
    transcripts: Transcripts
    changes: Changes
    profiles: Kept[dict[str, Any]]  # GET /api/client/me
    active_views: Kept[dict[str, Any]]  # GET /api/client/chat/active of an idle customer
    payment_views: Kept[dict[str, Any] | None]  # GET /api/client/payment-requests/{id}
    payment_events: PaymentEvents
    chat_events: ChatEvents
    notifier: Notifier
    payment_gateway: Gateway
    otp_provider: OtpProvider
    # The domain services (lib/*/service.py): what handlers and jobs call.
    chat: Chat
    payments: Payments
    presence: Presence
    accounts: Accounts

    def close(self) -> None:
        """Stop the background threads, then close the connections; safe to call twice."""
        self.notifier.close()
        self.heartbeats.close()
        self.revocations.close()
        self.changes.close()
        self.bus.close()
        self.valkey.close()
        self.db.close()
