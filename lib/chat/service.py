"""Chat, the domain service handlers call (`ctx.services.chat`): the parts a chat needs, held once
(runtime/container.py builds it), and one thin method per operation delegating to the lib/chat
functions, which stay the rules (and what lib/tests call directly)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from lib.chat import control, extensions, lifecycle, messages, pairing, purchases, views
from lib.chat.events import ChatEvents
from lib.chat.messages import Outgoing, Quota, Sent
from lib.config.app import AppConfig
from lib.db import Database
from lib.payments.gateway import Gateway
from lib.principal import Principal
from lib.transcripts import Transcripts


@dataclass(frozen=True, kw_only=True, eq=False)
class Chat:
    db: Database
    valkey: redis.Redis
    config: AppConfig
    events: ChatEvents
    transcripts: Transcripts
    gateway: Gateway
    messages_per_minute: int  # MESSAGES_PER_MINUTE, REST and WebSocket together

    # Pairing (lib/chat/pairing.py)

    def accept(self, mitra_id: str, session_id: str) -> dict[str, Any]:
        """A mitra takes a chat request; the first accept wins."""
        return pairing.accept(self.db, self.valkey, self.config, self.events, mitra_id, session_id)

    def decline(self, mitra_id: str, session_id: str) -> None:
        """A mitra turns a chat request down."""
        pairing.decline(self.db, self.valkey, self.events, mitra_id, session_id)

    def cancel(self, customer_id: str) -> dict[str, Any]:
        """The customer cancels the search they are in."""
        return pairing.cancel(self.db, self.valkey, self.events, customer_id)

    def fallback_to_blast(self, customer_id: str) -> dict[str, Any]:
        """After a targeted request failed, ask every available mitra with the same payment."""
        return pairing.fallback_to_blast(self.db, self.valkey, self.config, self.events, customer_id)

    def expire_searches(self) -> int:
        """Fail the searches nobody took in time (the deadlines job)."""
        return pairing.expire_searches(self.db, self.valkey, self.events)

    def expire_fallback_choices(self) -> int:
        """End the fallback choices nobody made in time (the deadlines job)."""
        return pairing.expire_fallback_choices(self.db, self.valkey, self.events)

    # A session's life (lib/chat/lifecycle.py)

    def end_early(self, who: Principal, session_id: str) -> dict[str, Any]:
        """A participant ends a live session before its time is up."""
        return lifecycle.end_early(self.db, self.valkey, self.config, self.events, who, session_id)

    def closing_message(self, who: Principal, session_id: str, content: str | None) -> dict[str, Any]:
        """A participant's last word while the session is closing."""
        return lifecycle.closing_message(self.db, self.valkey, self.events, self.transcripts, who, session_id, content)

    def set_topic(self, who: Principal, session_id: str, value: str, *, confirmed: bool) -> dict[str, Any]:
        """Set the session's topic sensitivity."""
        return lifecycle.set_topic(self.db, self.config, self.events, who, session_id, value, confirmed=confirmed)

    def reroute(self, session_id: str, to_mitra_id: str, by: str) -> dict[str, Any]:
        """An operator moves a live session to another mitra."""
        return lifecycle.reroute(self.db, self.valkey, self.config, self.events, session_id, to_mitra_id, by)

    def close_due(self) -> list[dict[str, Any]]:
        """Start closing the sessions whose time is up (the deadlines job)."""
        return lifecycle.close_due(self.db, self.valkey, self.events)

    def complete_due(self) -> list[dict[str, Any]]:
        """Complete the sessions whose closing time is up (the deadlines job)."""
        return lifecycle.complete_due(self.db, self.valkey, self.events)

    # Extensions (lib/chat/extensions.py)

    def request_extension(self, who: Principal, session_id: str, tier_id: str) -> dict[str, Any]:
        """The customer asks for more time at a tier."""
        return extensions.request_extension(self.db, self.config, self.events, who, session_id, tier_id)

    def respond_to_extension(self, who: Principal, extension_id: str, approve: bool) -> dict[str, Any]:
        """The mitra approves (an invoice is issued) or declines an extension."""
        return extensions.respond(
            self.db, self.valkey, self.config, self.events, self.gateway, who, extension_id, approve
        )

    def unbilled_extensions(self) -> list[str]:
        """Approved extensions still without an invoice."""
        return extensions.unbilled(self.db)

    def issue_invoice(self, extension_id: str) -> None:
        """Issue the invoice of an approved extension."""
        extensions.issue_invoice(self.db, self.valkey, self.config, self.events, self.gateway, extension_id)

    def decide_due_extensions(self) -> list[str]:
        """Decide the extensions the mitra did not answer in time (the deadlines job)."""
        return extensions.decide_due(self.db, self.valkey, self.config, self.events)

    def lapse_unpaid_extensions(self) -> list[str]:
        """Lapse the extensions not paid in time (the deadlines job)."""
        return extensions.lapse_unpaid(self.db, self.valkey, self.config, self.events)

    # Messages (lib/chat/messages.py)

    def quota(self) -> Quota:
        """The per-sender message limit, shared by REST and the socket's sends."""
        return Quota(self.valkey, self.messages_per_minute)

    def send(
        self, who: Principal, session_id: str, client_message_id: str, content: str
    ) -> tuple[dict[str, Any], bool]:
        """Store and deliver one message: (the stored message, whether this call stored it)."""
        return messages.send(
            self.db, self.events, self.transcripts, who, session_id, client_message_id, content, quota=self.quota()
        )

    def send_many(self, items: Sequence[Outgoing]) -> list[Sent]:
        """Store and deliver a batch of messages under one quota count, each with its own outcome."""
        return messages.send_many(self.db, self.events, self.transcripts, items, quota=self.quota())

    def mark(self, who: Principal, session_id: str, message_id: str, status: str) -> list[str]:
        """Mark messages `delivered` or `read` up to `message_id`."""
        return messages.mark(self.db, self.events, who, session_id, message_id, status)

    def messages(self, who: Principal, session_id: str, query: dict[str, Any]) -> dict[str, Any]:
        """A page of a session's messages for a participant."""
        return messages.page(self.db, self.transcripts, who, session_id, query)

    # Views and control center (lib/chat/views.py, lib/chat/control.py)

    def besties(self, customer_id: str, query: dict[str, Any]) -> dict[str, Any]:
        """The mitras a customer has chatted with, and whether each can be asked now."""
        return views.besties(self.db, self.valkey, self.config, customer_id, query)

    def dashboard(self) -> dict[str, Any]:
        """The control center's live figures."""
        return control.dashboard(self.db, self.valkey, self.config)

    def read_transcript(self, session_id: str, cc_user_id: str, reason: str) -> dict[str, Any]:
        """An operator reads a session's transcript, for a recorded reason."""
        return control.read_transcript(self.db, self.transcripts, session_id, cc_user_id, reason)

    # Purchases (lib/chat/purchases.py)

    def deliver(self, payment_request_id: str) -> str | None:
        """Deliver what a confirmed payment bought; the customer whose chat changed, if any."""
        return purchases.deliver(self.db, self.valkey, self.config, self.events, payment_request_id)
