"""Allocated capacity per pool: what this worker has placed on each pool, in GiB.

Published in capacity reports as ``allocated_capacity_gb``. Rebuilt from the database at
start (every live volume of this backend counts, whatever its status, as in Cinder) and kept
current by the manager: a create charges the pool before the flow runs (shrinking the window
in which the scheduler double-books) and gives it back if the volume was rescheduled away.
"""

from __future__ import annotations

import threading

import sqlalchemy as sa

from blockmgr.db import models

DEFAULT_POOL = "_pool0"


def pool_of(host: str | None, default: str = DEFAULT_POOL) -> str:
    """``host@backend#pool`` -> ``pool``; no ``#`` -> ``default``."""
    if host and "#" in host:
        return host.partition("#")[2] or default
    return default


class AllocatedCapacity:
    def __init__(self, default_pool: str = DEFAULT_POOL):
        self.default_pool = default_pool
        self._gb: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, host: str | None, size: int) -> None:
        pool = pool_of(host, self.default_pool)
        with self._lock:
            self._gb[pool] = self._gb.get(pool, 0) + int(size)

    def subtract(self, host: str | None, size: int) -> None:
        self.add(host, -int(size))

    def get(self, pool: str | None = None) -> int:
        with self._lock:
            return self._gb.get(pool or self.default_pool, 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._gb)

    def load(self, session, backend_host: str) -> None:
        """Recount from the live volume rows of ``backend_host`` (``host@backend``)."""
        vol = models.Volume
        rows = session.execute(
            sa.select(vol.host, sa.func.sum(vol.size))
            .where(vol.deleted.is_(False),
                   sa.or_(vol.host == backend_host, vol.host.like(backend_host + "#%")))
            .group_by(vol.host)).all()
        counted: dict[str, int] = {}
        for host, total in rows:
            pool = pool_of(host, self.default_pool)
            counted[pool] = counted.get(pool, 0) + int(total or 0)
        with self._lock:
            self._gb = counted
