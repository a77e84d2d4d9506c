"""Accounts, the domain service handlers call (`ctx.services.accounts`): the parts signing in and
managing accounts need, held once (runtime/container.py builds it), and one thin method per
operation delegating to the lib functions (lib/auth/, lib/cc_users.py, lib/privacy.py), which stay
the rules (and what lib/tests call directly)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lib import cc_users, privacy
from lib.auth import flows, signin, social
from lib.auth.revocation import RevocationList
from lib.auth.sessions import RefreshChain, SessionGrant
from lib.auth.social import JwksCache
from lib.config.app import AppConfig
from lib.config.env import Settings
from lib.db import Database
from lib.kept import Kept
from lib.principal import Principal
from lib.ratelimit import RateLimiter
from lib.transcripts import Transcripts


@dataclass(frozen=True, kw_only=True, eq=False)
class Accounts:
    db: Database
    config: AppConfig
    settings: Settings
    profiles: Kept[dict[str, Any]]  # the customers' profiles GET /api/client/me answers with
    refresh_chain: RefreshChain
    revocations: RevocationList
    limiter: RateLimiter
    google_jwks: JwksCache
    apple_jwks: JwksCache
    transcripts: Transcripts

    # App users (lib/auth/signin.py, lib/auth/social.py, lib/auth/flows.py)

    def sign_in_customer(
        self,
        provider: str,
        subject: str,
        *,
        caller: Principal | None,
        phone: str | None = None,
        email: str | None = None,
    ) -> dict[str, Any]:
        """Sign a customer in by a verified identity (linking it to an anonymous caller's account)."""
        return signin.customer_sign_in(
            self.db, self.profiles, self.settings, provider, subject, caller=caller, phone=phone, email=email
        )

    def sign_in_google(self, id_token: str, *, caller: Principal | None) -> dict[str, Any]:
        """Verify a Google ID token and sign its customer in."""
        claims = social.verify_google(id_token, self.google_jwks, self.settings.google_client_ids)
        return self.sign_in_customer("google", claims["sub"], caller=caller, email=social.verified_email(claims))

    def sign_in_apple(self, id_token: str, nonce: str, *, caller: Principal | None) -> dict[str, Any]:
        """Verify an Apple ID token (and its nonce) and sign its customer in."""
        claims = social.verify_apple(id_token, nonce, self.apple_jwks, self.settings.apple_client_ids)
        return self.sign_in_customer("apple", claims["sub"], caller=caller, email=social.verified_email(claims))

    def sign_in_mitra(self, phone: str) -> dict[str, Any]:
        """Sign in the mitra of a verified phone."""
        return signin.mitra_sign_in(self.db, self.settings, phone)

    def refresh(self, token: str, client_ip: str, user_types: tuple[str, ...]) -> tuple[SessionGrant, dict[str, Any]]:
        """Rotate a refresh token of one of `user_types` (reuse ends the sign-in): the new grant and the account."""
        return flows.refresh(self.db, self.refresh_chain, self.revocations, token, client_ip, user_types)

    # Control-center users (lib/cc_users.py)

    def authenticate_cc_user(self, email: str, password: str, client_ip: str) -> dict[str, Any]:
        """Check a control-center user's email and password (attempts limited)."""
        return cc_users.authenticate(self.db, self.config, self.limiter, email, password, client_ip)

    def change_password(self, caller: Principal, current: str, new: str) -> None:
        """Change one's own password (PASSWORD_CHANGE_ATTEMPTS); every other session ends."""
        cc_users.change_password(
            self.db, self.revocations, self.limiter, self.settings.password_change_attempts, caller, current, new
        )

    def reset_password(self, user_id: str, new: str) -> None:
        """Set a control-center user's password; all of that user's sessions end."""
        cc_users.reset_password(self.db, self.revocations, user_id, new)

    def update_cc_user(self, actor: Principal, user_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change a control-center user's role, name or status (deactivation ends its sessions)."""
        return cc_users.update_user(self.db, self.revocations, actor, user_id, changes)

    # Customers' rights (lib/privacy.py)

    def erase_customer(self, customer_id: str, actor: tuple[str, str], reason: str | None) -> dict[str, Any]:
        """Erase a customer (PDP), audited with who and why; 409 while a chat or a payment is open."""
        return privacy.erase(self.db, self.revocations, customer_id, actor, reason)

    def export_customer(self, customer_id: str) -> dict[str, Any]:
        """Everything we hold about a customer, as one document (PDP right of access)."""
        return privacy.export(self.db, self.transcripts, customer_id)
