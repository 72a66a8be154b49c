"""A named daemon thread that runs a function every N seconds until stopped.

The daemons' periodic work (heartbeats, capacity reports) is a handful of timers; a thread
each is simpler than an event loop and keeps a slow database or backend in one timer from
delaying another. A run that raises is logged and the timer goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

LOG = logging.getLogger(__name__)


class PeriodicTimer:
    """Calls ``func()`` every ``interval`` seconds (measured start to start; a run longer
    than the interval is followed immediately by the next). ``initial_delay`` before the
    first run (0: at once)."""

    def __init__(self, name: str, interval: float, func: Callable[[], object], *,
                 initial_delay: float = 0.0):
        self.name = name
        self.interval = float(interval)
        self.func = func
        self.initial_delay = float(initial_delay)
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> "PeriodicTimer":
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _loop(self) -> None:
        if self._stop.wait(self.initial_delay):
            return
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.func()
            except Exception:
                LOG.exception("Periodic task %s failed; it runs again in %.1f s",
                              self.name, self.interval)
            self.runs += 1
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
