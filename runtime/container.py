"""The composition root: every per-process part built from the settings, once, after the fork.

Nothing here connects: the pool opens on first use, Valkey connects on its first command, the
bus and the revocation poll start their threads when first needed.
"""

from __future__ import annotations

import logging

from lib.auth.otp_providers import make_otp_provider
from lib.auth.revocation import RevocationList
from lib.auth.service import Accounts
from lib.auth.sessions import RefreshChain
from lib.auth.social import JwksCache
from lib.auth.tokens import VerifiedTokens
from lib.bus import Bus
from lib.chat.events import ChatEvents
from lib.chat.service import Chat
from lib.chat.views import kept_active
from lib.config.app import AppConfig
from lib.config.env import ConfigError, Settings
from lib.customers import kept_profiles
from lib.db import Database
from lib.kept import Changes
from lib.payments.events import PaymentEvents
from lib.payments.gateway import make_gateway
from lib.payments.requests import kept_requests
from lib.payments.service import Payments
from lib.presence.availability import AvailabilityCache
from lib.presence.beats import Heartbeats
from lib.presence.service import Presence
from lib.push import Fcm, Notifier
from lib.ratelimit import RateLimiter
from lib.services import Services
from lib.transcripts import Transcripts, key_ring
from lib.valkey import make_client

log = logging.getLogger(__name__)


def build_services(settings: Settings, *, application_name: str = "halobestie") -> Services:
    settings.check_pushes()
    if not settings.firebase_service_account_path:
        log.warning("FIREBASE_SERVICE_ACCOUNT_PATH is not set: pushes are off (everything else works)")
    if not settings.redis_url:
        raise ConfigError("REDIS_URL is not set (make dev starts an embedded Valkey)")
    db = Database(
        settings.require_database_url(),
        server_tz=settings.server_tz,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        timeout=settings.db_pool_timeout,
        application_name=application_name,
    )
    valkey = make_client(settings.redis_url, settings.valkey_timeout)
    bus = Bus(settings.redis_url, valkey, connect_timeout=settings.valkey_timeout)
    config = AppConfig(db, bus)
    fcm = (
        Fcm(settings.firebase_service_account_path, settings.fcm_base_url)
        if settings.firebase_service_account_path
        else None
    )
    notifier = Notifier(db, valkey, fcm, per_recipient=settings.push_queue_per_recipient)
    chat_events = ChatEvents(bus, notifier)
    payment_events = PaymentEvents(bus)
    changes = Changes(db)
    profiles = kept_profiles(changes, db)
    active_views = kept_active(changes, db)
    payment_views = kept_requests(changes, db)
    revocations = RevocationList(db, bus, ttl_seconds=settings.access_token_ttl_seconds)
    rate_limiter = RateLimiter(valkey)
    refresh_chain = RefreshChain(settings.auth_jwt_secret)
    google_jwks = JwksCache(settings.google_jwks_url)
    apple_jwks = JwksCache(settings.apple_jwks_url)
    availability_cache = AvailabilityCache()
    transcripts = Transcripts(db, key_ring(settings))
    payment_gateway = make_gateway(settings)
    chat = Chat(
        db=db,
        valkey=valkey,
        config=config,
        events=chat_events,
        transcripts=transcripts,
        gateway=payment_gateway,
        messages_per_minute=settings.messages_per_minute,
    )

    # Whoever confirms a payment delivers what it bought, in the same process (the re-emit job
    # covers a process that died in between).
    def delivered(request_id: str) -> None:
        customer = chat.deliver(request_id)
        payment_views.forget(request_id)
        if customer is not None:
            active_views.forget(customer)  # a new session: this process answers chat/active with it at once

    payment_events.on_confirmed(delivered)
    return Services(
        settings=settings,
        db=db,
        valkey=valkey,
        bus=bus,
        config=config,
        revocations=revocations,
        rate_limiter=rate_limiter,
        verified_tokens=VerifiedTokens(settings.auth_jwt_secret),
        refresh_chain=refresh_chain,
        google_jwks=google_jwks,
        apple_jwks=apple_jwks,
        availability_cache=availability_cache,
        heartbeats=Heartbeats(db, valkey),
        transcripts=transcripts,
        changes=changes,
        profiles=profiles,
        active_views=active_views,
        payment_views=payment_views,
        payment_events=payment_events,
        chat_events=chat_events,
        notifier=notifier,
        payment_gateway=payment_gateway,
        otp_provider=make_otp_provider(settings),
        chat=chat,
        payments=Payments(
            db=db,
            valkey=valkey,
            config=config,
            settings=settings,
            gateway=payment_gateway,
            events=payment_events,
            limiter=rate_limiter,
            views=payment_views,
        ),
        presence=Presence(
            db=db,
            valkey=valkey,
            config=config,
            revocations=revocations,
            availability_cache=availability_cache,
            heartbeat_cadence_seconds=settings.mitra_heartbeat_cadence_seconds,
            heal_seconds=settings.presence_heal_seconds,
        ),
        accounts=Accounts(
            db=db,
            config=config,
            settings=settings,
            profiles=profiles,
            refresh_chain=refresh_chain,
            revocations=revocations,
            limiter=rate_limiter,
            google_jwks=google_jwks,
            apple_jwks=apple_jwks,
            transcripts=transcripts,
        ),
    )
