"""Named per-resource locks (in-process now; tooz for several workers on one backend later).

Lock names follow Cinder's so create and delete paths exclude each other:
``<snapshot_id>-delete_snapshot`` is held while a volume is created from the snapshot and
while the snapshot is deleted; ``<volume_id>-delete_volume`` likewise for clones. Every
operation on a resource also holds ``<resource_id>`` itself, so two flows never work on one
resource at the same time (a duplicated RPC message waits, then finds the status moved on).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterable, Iterator


class LockRegistry:
    """Reference-counted named ``threading.Lock``s; unused names are dropped."""

    def __init__(self):
        self._guard = threading.Lock()
        self._locks: dict[str, list] = {}   # name -> [lock, users]

    @contextlib.contextmanager
    def hold(self, names: Iterable[str]) -> Iterator[None]:
        """Hold every lock in ``names`` (taken in sorted order, so holders never deadlock)."""
        ordered = sorted(set(names))
        entries = []
        with self._guard:
            for name in ordered:
                entry = self._locks.setdefault(name, [threading.Lock(), 0])
                entry[1] += 1
                entries.append((name, entry))
        taken = []
        try:
            for _name, entry in entries:
                entry[0].acquire()
                taken.append(entry)
            yield
        finally:
            for entry in reversed(taken):
                entry[0].release()
            with self._guard:
                for name, entry in entries:
                    entry[1] -= 1
                    if entry[1] == 0:
                        self._locks.pop(name, None)

    def held_names(self) -> set[str]:
        with self._guard:
            return {name for name, (lock, _n) in self._locks.items() if lock.locked()}
