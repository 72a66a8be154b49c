"""Named per-resource locks: in-process (:class:`LockRegistry`), or shared by the workers of
a cluster through tooz (:class:`ToozLockRegistry`, ``docs/cluster.md``).

Which names a request holds is declared by its flow module and asked by both the volume
manager's endpoint and recovery (:func:`blockmgr.flows.common.lock_names_of`). The names
follow Cinder's so create and delete paths exclude each other, and every operation on a
resource also holds ``<resource_id>`` itself, so two flows never work on one resource at the
same time (a duplicated RPC message waits, then finds the status moved on).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Iterable, Iterator

LOG = logging.getLogger(__name__)


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


class ToozLockRegistry:
    """The same ``hold(names)`` contract, held across every worker of a cluster.

    Each name is first taken in-process (a :class:`LockRegistry`: threads of this worker
    queue locally instead of polling Redis against each other), then as a tooz lock of
    ``coordinator`` (on Redis: a key with ``lock_timeout``, kept alive by the coordinator's
    heartbeat thread, so the locks of a worker that died free themselves). Names are taken in
    sorted order, as in :class:`LockRegistry`, so two holders never deadlock.

    :meth:`current_names` tells the flow runner which locks the calling thread holds, so
    the job of the flow it starts records them and a peer taking the flow over holds the
    same ones (``blockmgr.cluster.runner``).

    :param unavailable: ``unavailable(exc) -> BlockmgrError`` for a tooz failure (the
        coordination service cannot be reached).
    """

    def __init__(self, coordinator, *, unavailable=None):
        self.coordinator = coordinator
        self._local = LockRegistry()
        self._unavailable = unavailable
        self._thread = threading.local()

    @contextlib.contextmanager
    def hold(self, names: Iterable[str]) -> Iterator[None]:
        """Hold every lock in ``names`` here and on every peer (blocks until free)."""
        import tooz

        ordered = sorted(set(names))
        with self._local.hold(ordered):
            taken = []
            try:
                for name in ordered:
                    lock = self.coordinator.get_lock(name.encode())
                    try:
                        lock.acquire(blocking=True)
                    except tooz.ToozError as exc:
                        if self._unavailable is None:
                            raise
                        raise self._unavailable(exc) from exc
                    taken.append(lock)
                stack = self._stack()
                stack.append(ordered)
                try:
                    yield
                finally:
                    stack.pop()
            finally:
                for lock in reversed(taken):
                    try:
                        lock.release()
                    except Exception:   # it expires by itself (lock_timeout)
                        LOG.warning("Could not release lock %r", lock.name, exc_info=True)

    def current_names(self) -> list[str]:
        """Names the calling thread holds through this registry, sorted."""
        return sorted({name for names in self._stack() for name in names})

    def held_names(self) -> set[str]:
        """Names held by this worker (not by its peers)."""
        return self._local.held_names()

    def _stack(self) -> list:
        stack = getattr(self._thread, "stack", None)
        if stack is None:
            stack = self._thread.stack = []
        return stack
