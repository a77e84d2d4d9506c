"""The client's address, trusting X-Forwarded-For only as far as the configured proxy hops."""

from __future__ import annotations

import ipaddress

import falcon


def client_ip(req: falcon.Request, trusted_hops: int) -> str:
    remote = req.remote_addr or ""
    if trusted_hops <= 0:
        return remote
    forwarded = [p.strip() for p in (req.get_header("X-Forwarded-For") or "").split(",") if p.strip()]
    # Each trusted proxy appends the address it saw; the client is `trusted_hops` from the right.
    found = forwarded[-trusted_hops] if len(forwarded) >= trusted_hops else forwarded[0] if forwarded else remote
    # The header is text anyone can write: only an address is an address (it is stored and counted).
    try:
        return str(ipaddress.ip_address(found))
    except ValueError:
        return remote
