"""The customer document the app reads (GET /api/client/me, and what PATCH /me and usp-seen answer)."""

from typing import Any

from lib.customers import profile
from lib.db import Database
from lib.errors import Unauthorized
from lib.kept import Kept

# What the original returned for the app's own logic (issue 26). `account_belongs_to` is DOMAIN.md's
# name; API.md names neither of the others, so: `has_consulted`, a session of this account has ended
# (closing or completed); `linked_identities`, the providers linked (phone, google, apple) in the
# order they were linked, or ["anonymous"] when none is. They are read on every call, not kept with
# the profile: that cache is dropped only when the customer row changes, and an ended session does
# not change it.
_ACCOUNT = (
    "SELECT c.account_belongs_to, EXISTS (SELECT 1 FROM chat_sessions s WHERE s.customer_id = c.id "
    "AND s.status IN ('closing', 'completed')) AS has_consulted, "
    "ARRAY(SELECT i.provider FROM customer_identities i WHERE i.customer_id = c.id "
    "ORDER BY i.created_at, i.provider) AS providers FROM customers c WHERE c.id = %(customer_id)s"
)


def customer_view(db: Database, customer_id: str, kept: Kept[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The profile (from `kept` when given, else read now) and the account facts above."""
    base = kept.get(customer_id) if kept is not None else profile(db, customer_id)
    account = db.fetch_one(_ACCOUNT, {"customer_id": customer_id})
    if account is None:  # the row went between the two reads
        raise Unauthorized("Account not found")
    return {
        **base,
        "account_belongs_to": account["account_belongs_to"],
        "has_consulted": account["has_consulted"],
        # Two phones (or Google accounts) linked to one account are one kind of identity.
        "linked_identities": list(dict.fromkeys(account["providers"])) or ["anonymous"],
    }
