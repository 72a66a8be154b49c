"""BENCHMARK ONLY: a loopback driver whose backend calls never return, for
``bench/bench_recovery.py``.

The benchmark needs a worker that dies with N flows in flight, each one *inside* its driver
call -- the task recorded ``RUNNING`` in the logbook, the side effect not done -- which is
what a crash in the middle of a busy backend leaves. :class:`BlockingLoopbackDriver` is the
real :class:`~blockmgr.drivers.loopback.driver.LoopbackDriver` whose ``create_volume``,
``manage_existing``, ``delete_volume`` and ``create_snapshot`` announce themselves
(:attr:`entered`) and then wait for ever; the benchmark's forked worker waits until N calls
have entered and dies by ``os._exit``. It lives in ``bench/`` and is never shipped: the
daemon that recovers those flows uses the plain ``loopback`` driver on the same directory.
"""

from __future__ import annotations

import threading

from blockmgr.drivers.loopback.driver import LoopbackDriver


class BlockingLoopbackDriver(LoopbackDriver):
    """Loopback driver whose side-effecting calls block until the process dies."""

    BLOCKING = ("create_volume", "manage_existing", "delete_volume", "create_snapshot")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._cond = threading.Condition()
        self.entered = 0
        self._never = threading.Event()

    def _block(self) -> None:
        with self._cond:
            self.entered += 1
            self._cond.notify_all()
        self._never.wait()   # released only by the process's death

    def wait_entered(self, count: int, timeout: float) -> int:
        """Wait until ``count`` backend calls are blocked (or ``timeout``); how many are."""
        with self._cond:
            self._cond.wait_for(lambda: self.entered >= count, timeout)
            return self.entered

    def create_volume(self, volume):
        self._block()

    def manage_existing(self, volume, existing_ref):
        self._block()

    def delete_volume(self, volume):
        self._block()

    def create_snapshot(self, snapshot):
        self._block()
