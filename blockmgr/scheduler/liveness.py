"""Which volume backends are up, read from the ``services`` heartbeats, cached briefly.

Placing a burst of volumes must not cost a services query per request, and a heartbeat is
only refreshed every ``report_interval`` seconds anyway, so the set of live backends is
cached for ``ttl`` seconds (default 1 s). Liveness rules are :mod:`blockmgr.services`'.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from blockmgr import services


class LiveBackends:
    """``get()`` -> frozenset of ``host@backend`` whose volume service is up and enabled."""

    def __init__(self, db, down_time_s: int, *, ttl: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self._db = db
        self._down_time_s = down_time_s
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: frozenset[str] | None = None
        self._at = 0.0

    def get(self, *, fresh: bool = False) -> frozenset[str]:
        with self._lock:
            now = self._clock()
            if fresh or self._cached is None or now - self._at >= self._ttl:
                with self._db.reader() as session:
                    rows = services.list_services(session, self._down_time_s,
                                                  binary=services.VOLUME_BINARY)
                self._cached = frozenset(s.host for s in rows if s.up and not s.disabled)
                self._at = now
            return self._cached

    def is_up(self, backend: str, *, fresh: bool = True) -> bool:
        return backend.partition("#")[0] in self.get(fresh=fresh)
