"""Customer and mitra sign-in: resolve the account, start a session, answer with a token pair."""

from __future__ import annotations

from typing import Any

from lib.auth.accounts import load_account, require_usable
from lib.auth.flows import sign_in, token_pair
from lib.auth.identity import resolve_customer
from lib.config.env import Settings
from lib.db import Database
from lib.kept import Kept
from lib.principal import Principal


def customer_sign_in(
    db: Database,
    profiles: Kept[dict[str, Any]],
    settings: Settings,
    provider: str,
    subject: str,
    *,
    caller: Principal | None,
    phone: str | None = None,
    email: str | None = None,
) -> dict[str, Any]:
    caller_id = caller.user_id if caller is not None and caller.user_type == "customer" else None
    with db.connection() as conn:
        customer_id = resolve_customer(conn, provider, subject, caller_id=caller_id, phone=phone, email=email)
        conn.execute(
            "UPDATE customers SET last_login_at = now() WHERE id = %(customer_id)s", {"customer_id": customer_id}
        )
        grant = sign_in(conn, settings, "customer", customer_id)
        account = require_usable("customer", load_account(conn, "customer", customer_id))
    for changed in {customer_id, caller_id} - {None}:  # upgraded or linked: this process answers /me anew
        profiles.forget(str(changed))
    return token_pair(settings, grant, account)


def mitra_sign_in(db: Database, settings: Settings, phone: str) -> dict[str, Any]:
    with db.connection() as conn:
        row = conn.execute("SELECT id FROM mitras WHERE phone = %(phone)s", {"phone": phone}).fetchone()
        account = require_usable("mitra", load_account(conn, "mitra", str(row["id"])) if row else None)
        grant = sign_in(conn, settings, "mitra", str(account["id"]))
    return token_pair(settings, grant, account)
