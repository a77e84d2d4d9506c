"""The client's address, trusting X-Forwarded-For only as far as the configured proxy hops, and the
network a per-address limit counts it in."""

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


def network_of(address: str) -> str:
    """What a limit "per address" counts (sign-ups, OTP requests, control-center logins, refused
    webhooks): an IPv4 address, or the /64 an IPv6 address is in. A phone on a mobile network gets
    a whole /64 (RFC 6459), and a home line at least one: counted per IPv6 address, one device
    could pick a fresh address for every request and meet no limit at all."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an address (a test client's remote_addr): counted as it is
    if isinstance(parsed, ipaddress.IPv4Address):
        return address
    # One IPv4 client however it is written: a dual-stack listener sees ::ffff:a.b.c.d (all of them
    # in ::/64), a translator in front of us 64:ff9b::a.b.c.d, a 6to4 or Teredo tunnel its own form.
    embedded = parsed.ipv4_mapped or parsed.sixtofour or (parsed.teredo[1] if parsed.teredo else None)
    if embedded is None and parsed in _NAT64:
        embedded = ipaddress.IPv4Address(int(parsed) & 0xFFFFFFFF)
    if embedded is not None:
        return str(embedded)
    if int(parsed) >> 64 == 0:  # ::/64 (loopback, IPv4-compatible) is no client's network
        return str(parsed)
    return str(ipaddress.IPv6Network((int(parsed) >> 64 << 64, 64)))


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052's well-known prefix
