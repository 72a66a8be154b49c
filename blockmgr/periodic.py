"""A named timer that runs a function every N seconds until stopped, on ``futurist.periodics``.

The daemons' periodic work (heartbeats, capacity reports, ledger sweeps and claim renewals)
is a handful of timers per process. Each :class:`PeriodicTimer` is one
``futurist.periodics.PeriodicWorker`` holding one callback, run by the synchronous executor
in a daemon thread of its own:

* a slow run (a database or backend that hangs) holds only its own timer's thread, so it
  never delays another timer;
* one thread per timer, as many as timers and no more. A shared worker would need a pool
  thread per timer to keep that isolation (futurist's ``ThreadPoolExecutor`` starts a new
  thread per submission until ``max_workers``; a smaller pool lets a few slow timers starve
  the rest) plus its scheduling thread, and futurist cannot take one callback out of a
  running worker, which :meth:`PeriodicTimer.stop` needs.

futurist does the scheduling (start to start: a run longer than the interval is followed at
once by the next), the run and failure accounting, and the failure hook. This module adds
the initial delay, blockmgr's log line for a failed run, and a ``stop(timeout)`` that never
blocks longer than its timeout: with the synchronous executor a run happens while the worker
holds its condition lock, so ``PeriodicWorker.stop()`` would wait for that run. Instead, a
stop during a run lets the run end the worker itself (``NeverAgain`` with
``auto_stop_when_empty``); a stop between runs wakes the idle worker at once.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from futurist import periodics

LOG = logging.getLogger(__name__)


class PeriodicTimer:
    """Calls ``func()`` every ``interval`` seconds (measured start to start; a run longer
    than the interval is followed immediately by the next), after ``initial_delay``
    seconds (0: at once). A run that raises is logged and the timer goes on.

    :meth:`start` returns the timer; :meth:`stop` ends it: the run in progress, if any,
    finishes, no other starts, and ``stop`` waits at most ``timeout`` seconds for it.
    """

    def __init__(self, name: str, interval: float, func: Callable[[], object], *,
                 initial_delay: float = 0.0):
        if not interval > 0:
            raise ValueError("periodic task %s: the interval must be positive, not %r"
                             % (name, interval))
        self.name = name
        self.interval = float(interval)
        self.func = func
        self.initial_delay = max(0.0, float(initial_delay))
        self._stop = threading.Event()
        self._guard = threading.Lock()   # orders stop() against a run's start and end
        self._running = False
        # futurist's own lines (a DEBUG one per run) stay under its logger, "futurist".
        self._worker = periodics.PeriodicWorker([], on_failure=self._failed,
                                                schedule_strategy="last_started")
        self._watcher = self._worker.add(
            periodics.periodic(self.interval, run_immediately=True)(self._tick_function()))
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "PeriodicTimer":
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """No run starts after this; wait up to ``timeout`` s (None: for ever) for the run
        in progress. Safe to call from the timer's own function, and more than once."""
        with self._guard:
            self._stop.set()
            running = self._running
        if not running:
            # The worker is idle (or about to find the stop flag in its next tick): its
            # lock is free, so this only wakes it up.
            self._worker.stop()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def runs(self) -> int:
        """Runs finished so far, failed ones included."""
        return self._watcher.runs

    def _tick_function(self) -> Callable[[], None]:
        # futurist's decorator tags the function object itself (a bound method refuses new
        # attributes, and ``func`` is the caller's): a fresh function per timer.
        def tick() -> None:
            with self._guard:
                if self._stop.is_set():
                    raise periodics.NeverAgain()
                self._running = True
            try:
                self.func()
            finally:
                with self._guard:
                    self._running = False
            if self._stop.is_set():   # stopped during the run: end the worker from here
                raise periodics.NeverAgain()

        tick.__qualname__ = "PeriodicTimer(%s)" % self.name
        return tick

    def _run(self) -> None:
        if self._stop.wait(self.initial_delay):
            return
        # A stop() that came in between set the worker's tombstone: start() returns at once.
        self._worker.start(auto_stop_when_empty=True)

    def _failed(self, _callback, _kind, _spacing, exc_info, traceback=None) -> None:
        """futurist's failure hook: log, and the timer goes on (unless stopped meanwhile:
        this runs in the worker's thread, under its re-entrant lock, so stopping the
        worker here does not wait)."""
        LOG.error("Periodic task %s failed; it runs again in %.1f s%s", self.name,
                  self.interval, "" if all(exc_info) or not traceback else ":\n" + traceback,
                  exc_info=exc_info if all(exc_info) else None)
        if self._stop.is_set():
            self._worker.stop()
