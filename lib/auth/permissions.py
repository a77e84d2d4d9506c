"""Control-center roles and the permissions each holds (API.md, internal surface)."""

from __future__ import annotations

READ_PERMISSIONS = frozenset(
    {
        "dashboard.read",
        "mitras.read",
        "customers.read",
        "sessions.read",
        "payments.read",
        "config.read",
    }
)
ALL_PERMISSIONS = READ_PERMISSIONS | frozenset(
    {
        "users.manage",
        "mitras.manage",
        "sessions.manage",
        "payments.manage",
        "payments.refund",  # recording that a refund was sent back: admins only
        "config.write",
        "pricing.manage",
        "customers.manage",  # erasure on request (lib/privacy.py): admins only
        "transcripts.read",  # the audited transcript read: admins only
        "sessions.topic",  # the session list's topic flag and filter, audited: admins only
    }
)
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": ALL_PERMISSIONS,
    "operator": READ_PERMISSIONS | frozenset({"sessions.manage", "mitras.manage"}),
}
ROLES = tuple(ROLE_PERMISSIONS)


def role_allows(role: str | None, permission: str | None) -> bool:
    if role not in ROLE_PERMISSIONS:
        return False
    return permission is None or permission in ROLE_PERMISSIONS[role]
