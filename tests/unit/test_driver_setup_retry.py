"""Driver setup retries of a volume backend (tenacity): the wait schedule the options give,
the retry budget, and a stop that ends the wait at once."""

from __future__ import annotations

import threading
import time

from blockmgr import exception
from blockmgr.testing.fake_driver import FakeDriver

from tests.unit.test_volume_service import BACKEND, _wait_for, env  # noqa: F401  (fixture)


class RecordingEvent(threading.Event):
    """The backend's stop event, recording how long each retry waited for it."""

    def __init__(self):
        super().__init__()
        self.waits = []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        return super().wait(timeout)


def _failing(times):
    driver = FakeDriver(None, BACKEND, host="node1@fake")
    driver.inject_failure("check_for_setup_error",
                          exception.VolumeBackendAPIException(reason="array offline"),
                          times=times)
    return driver


def test_waits_double_from_the_interval_up_to_the_maximum(env):  # noqa: F811
    env.conf.set_override("driver_setup_retry_interval", 0.01)
    env.conf.set_override("driver_setup_retry_max_interval", 0.3)
    svc = env.make(driver=_failing(6))
    svc._stopping = RecordingEvent()
    svc.start()
    assert svc.ready.wait(20), svc.setup_error
    assert svc.setup_attempts == 7
    # below 0.05 s the doubling starts from 0.1 s, so a zero interval never spins
    assert [round(w, 3) for w in svc._stopping.waits[:6]] == [0.01, 0.1, 0.2, 0.3, 0.3, 0.3]


def test_retry_budget_counts_retries_not_attempts(env):  # noqa: F811
    env.conf.set_override("driver_setup_retries", 2)
    svc = env.make(driver=_failing(10))
    svc.start()
    assert _wait_for(lambda: svc._thread is not None and not svc._thread.is_alive())
    assert not svc.ready.is_set() and svc.setup_attempts == 3
    assert svc.setup_error.startswith("driver setup failed (attempt 3): ")


def test_stop_ends_the_wait_and_no_attempt_follows(env):  # noqa: F811
    env.conf.set_override("driver_setup_retry_interval", 30)
    env.conf.set_override("driver_setup_retry_max_interval", 60)
    svc = env.make(driver=_failing(10))
    svc.start()
    assert _wait_for(lambda: svc.setup_attempts == 1 and svc.setup_error is not None)
    started = time.monotonic()
    svc.stop(grace=1)
    svc._thread.join(5)
    assert not svc._thread.is_alive() and time.monotonic() - started < 5
    assert svc.setup_attempts == 1 and not svc.ready.is_set()
