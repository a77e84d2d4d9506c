"""Socket presence in Valkey (lib/sockets.py): a refresh of thousands of sockets in few commands,
lapsed members dropped, keys that expire when no gateway refreshes them."""

from __future__ import annotations

import time
import uuid

from lib import sockets
from lib.services import Services


def test_a_refresh_of_many_sockets_announces_each_and_drops_the_lapsed(services: Services) -> None:
    valkey = services.valkey
    users = [str(uuid.uuid4()) for _ in range(sockets.CHUNK * 2 + 7)]  # more than one command's worth
    sockets.announce(valkey, [(sockets.key("customer", u), sockets.member("gw-a", None)) for u in users])
    assert all(sockets.covered(valkey, "customer", u, "any-session") for u in users)
    first = sockets.key("customer", users[0])
    assert 0 < valkey.ttl(first) <= sockets.TTL_SECONDS * 2

    # A crashed gateway's member lapses: it no longer counts, and the next refresh removes it.
    mitra = str(uuid.uuid4())
    key = sockets.key("mitra", mitra)
    valkey.zadd(key, {sockets.member("gw-crashed", "s-1"): time.time() - 1})
    assert not sockets.covered(valkey, "mitra", mitra, "s-1")
    sockets.announce(valkey, [(key, sockets.member("gw-b", "s-2"))])
    assert valkey.zrange(key, 0, -1) == [sockets.member("gw-b", "s-2")]
    assert sockets.covered(valkey, "mitra", mitra, "s-2")
    assert not sockets.covered(valkey, "mitra", mitra, "s-1")

    # Nobody refreshes: the key goes with its TTL.
    valkey.expire(first, 1)
    time.sleep(1.2)
    assert not sockets.covered(valkey, "customer", users[0], None)
