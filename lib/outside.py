"""A listener process's calls to outside services share a few slots, so a provider that hangs holds
at most that many of its request threads, never all of them."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from lib.metrics import m

log = logging.getLogger(__name__)


class Busy(Exception):
    """Every slot is taken: the call was not made (each client raises its own "never sent" error)."""


class Slots:
    """At most `size` outside calls at once in this process (None: no limit, for a process whose
    threads are its own jobs, not requests). A call finding none free is refused at once, not
    queued: a queue would hold the thread just as the hanging call does.

    Why: a request thread waiting on Xendit or Twilio (up to their read timeouts, 10 s and 5 s)
    serves nobody else meanwhile. With few threads per worker, which database-bound reads want
    (docs/db_reads.md), a provider that hangs would otherwise take every thread of the listener
    within seconds, and chat, presence and the webhook with them."""

    def __init__(self, size: int | None) -> None:
        self.size = size
        self._free = threading.BoundedSemaphore(size) if size is not None else None

    @contextmanager
    def held(self, provider: str) -> Iterator[None]:
        free = self._free
        if free is None:
            yield
            return
        if not free.acquire(blocking=False):
            m().outside_busy.labels(provider).inc()
            log.warning("%s: all %d outside-call slots of this process are waiting; call refused", provider, self.size)
            raise Busy(provider)
        try:
            yield
        finally:
            free.release()


UNLIMITED = Slots(None)
