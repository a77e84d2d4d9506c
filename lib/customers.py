"""Customer profile reads and edits."""

from __future__ import annotations

from typing import Any

from lib.auth.accounts import customer_doc
from lib.db import Database
from lib.errors import Unauthorized


def profile(db: Database, customer_id: str) -> dict[str, Any]:
    row = db.fetch_one("SELECT * FROM customers WHERE id = %(id)s", {"id": customer_id})
    if row is None:  # a token for a customer that no longer exists
        raise Unauthorized("Account not found")
    return customer_doc(row)
