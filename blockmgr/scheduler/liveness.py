"""Which volume backends are up, read from the ``services`` heartbeats, cached briefly -- and
which of them have very likely died although they still count as up.

Placing a burst of volumes must not cost a services query per request, and a heartbeat is
only refreshed every ``report_interval`` seconds anyway, so the set of live backends is
cached for ``ttl`` seconds (default 1 s). Liveness rules are :mod:`blockmgr.services'`:
a backend is **up** while its last heartbeat is at most ``service_down_time`` old.

**Suspects.** ``service_down_time`` is deliberately long (60 s by default, six heartbeats):
it decides that a service is gone. A worker killed with ``kill -9`` keeps counting as up for
that long, and the scheduler kept placing volumes on it. So each read also watches every
backend's heartbeats: from two reads that saw ``report_count`` move, its heartbeat period is
``delta heartbeat_at / delta report_count`` (both written by the worker, so clock skew
between the nodes does not matter); a backend whose ``report_count`` has not moved for
``missed`` periods, timed on this scheduler's own monotonic clock from the read that first
saw the current count, is a **suspect**. A worker that cannot write its heartbeat for that
long cannot run a flow either (flows write the same database). Placement avoids suspects
while another backend fits and still uses them when none does (see
:meth:`blockmgr.scheduler.manager.SchedulerManager._place`): a false suspicion (a stalled
heartbeat thread on an overloaded node) costs a less even spread, never a failed request.
Until a backend's period has been measured, it cannot be a suspect.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable

from blockmgr import services


@dataclasses.dataclass
class _Beat:
    count: int
    at: object            # heartbeat_at as written (naive UTC datetime)
    seen: float           # this scheduler's clock when ``count`` was first read
    period: float | None  # seconds between two heartbeats, once measured


class LiveBackends:
    """``get()`` -> frozenset of ``host@backend`` whose volume service is up and enabled;
    ``suspects()`` -> the up ones that missed ``missed`` heartbeats in a row (0: never)."""

    def __init__(self, db, down_time_s: int, *, ttl: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, missed: int = 0):
        self._db = db
        self._down_time_s = down_time_s
        self._ttl = ttl
        self._clock = clock
        self._missed = missed
        self._lock = threading.Lock()
        self._cached: frozenset[str] | None = None
        self._suspects: frozenset[str] = frozenset()
        self._beats: dict[str, _Beat] = {}
        self._at = 0.0

    def get(self, *, fresh: bool = False) -> frozenset[str]:
        with self._lock:
            self._refresh(fresh)
            return self._cached

    def suspects(self, *, fresh: bool = False) -> frozenset[str]:
        """Up backends whose heartbeats stopped ``missed`` periods ago (see module doc)."""
        with self._lock:
            self._refresh(fresh)
            return self._suspects

    def is_up(self, backend: str, *, fresh: bool = True) -> bool:
        return backend.partition("#")[0] in self.get(fresh=fresh)

    def _refresh(self, fresh: bool) -> None:
        now = self._clock()
        if not (fresh or self._cached is None or now - self._at >= self._ttl):
            return
        with self._db.reader() as session:
            rows = services.list_services(session, self._down_time_s,
                                          binary=services.VOLUME_BINARY)
        self._cached = frozenset(s.host for s in rows if s.up and not s.disabled)
        self._at = now
        suspects = set()
        for row in rows:
            beat = self._watch(row, now)
            if (self._missed and row.host in self._cached and beat is not None
                    and beat.period is not None
                    and now - beat.seen > self._missed * beat.period):
                suspects.add(row.host)
        self._suspects = frozenset(suspects)

    def _watch(self, row, now: float) -> _Beat | None:
        if row.heartbeat_at is None:
            self._beats.pop(row.host, None)
            return None
        beat = self._beats.get(row.host)
        if beat is None or row.report_count < beat.count:
            beat = self._beats[row.host] = _Beat(row.report_count, row.heartbeat_at, now, None)
        elif row.report_count > beat.count:
            span = (row.heartbeat_at - beat.at).total_seconds()
            period = span / (row.report_count - beat.count)
            beat.count, beat.at, beat.seen = row.report_count, row.heartbeat_at, now
            if period > 0:
                beat.period = period
        return beat
