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
        address = ipaddress.ip_address(found)
    except ValueError:
        return remote
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:  # "fe80::1%<anything>": a zone is free text, and no client has one
            return remote
        if address.ipv4_mapped:  # one client, one key: ::ffff:1.2.3.4 is 1.2.3.4
            return str(address.ipv4_mapped)
    return str(address)
