"""PeriodicTimer (futurist periodics underneath): the properties the daemons rely on."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from blockmgr import periodic


def _wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def timers():
    started: list[periodic.PeriodicTimer] = []

    def _start(*args, **kwargs):
        timer = periodic.PeriodicTimer(*args, **kwargs).start()
        started.append(timer)
        return timer

    yield _start
    for timer in started:
        timer.stop(timeout=5)


def test_runs_repeatedly_and_counts_runs(timers):
    calls = []
    timer = timers("count", 0.02, lambda: calls.append(time.monotonic()))
    assert _wait_for(lambda: timer.runs >= 3)
    assert len(calls) >= 3
    assert not timer.stopped


def test_a_run_that_raises_is_logged_and_the_timer_goes_on(timers, caplog):
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database away")

    with caplog.at_level(logging.ERROR, logger=periodic.LOG.name):
        timer = timers("flaky", 0.02, flaky)
        assert _wait_for(lambda: timer.runs >= 3)
    [record] = [r for r in caplog.records if r.name == periodic.LOG.name]
    assert "Periodic task flaky failed" in record.getMessage()
    assert record.exc_info and record.exc_info[0] is RuntimeError


def test_a_slow_timer_does_not_delay_another(timers):
    release = threading.Event()
    fast_calls = []
    timers("slow", 0.01, lambda: release.wait(5))
    fast = timers("fast", 0.02, lambda: fast_calls.append(time.monotonic()))
    try:
        assert _wait_for(lambda: fast.runs >= 10, timeout=3)
        gaps = [b - a for a, b in zip(fast_calls, fast_calls[1:])]
        assert max(gaps) < 0.5
    finally:
        release.set()


def test_initial_delay_comes_before_the_first_run(timers):
    started = time.monotonic()
    first = []
    timer = timers("delayed", 0.05, lambda: first.append(time.monotonic()),
                   initial_delay=0.3)
    assert _wait_for(lambda: timer.runs >= 1)
    assert first[0] - started >= 0.29


def test_stop_during_the_initial_delay_means_no_run():
    calls = []
    timer = periodic.PeriodicTimer("never", 0.01, lambda: calls.append(1),
                                   initial_delay=30).start()
    started = time.monotonic()
    timer.stop(timeout=5)
    assert time.monotonic() - started < 1
    assert timer.stopped and not timer._thread.is_alive()
    time.sleep(0.05)
    assert calls == [] and timer.runs == 0


def test_stop_of_an_idle_timer_is_prompt():
    timer = periodic.PeriodicTimer("idle", 60, lambda: None).start()
    assert _wait_for(lambda: timer.runs == 1)
    started = time.monotonic()
    timer.stop(timeout=5)
    assert time.monotonic() - started < 1
    assert not timer._thread.is_alive()


def test_stop_returns_after_its_timeout_and_no_run_starts_after_the_current_one():
    entered, release = threading.Event(), threading.Event()
    calls = []

    def slow():
        calls.append(1)
        entered.set()
        release.wait(5)

    timer = periodic.PeriodicTimer("slow", 0.01, slow).start()
    assert entered.wait(5)
    started = time.monotonic()
    timer.stop(timeout=0.2)
    assert 0.15 <= time.monotonic() - started < 1.0
    assert timer._thread.is_alive()   # the run in progress is not interrupted
    release.set()
    timer._thread.join(5)
    assert not timer._thread.is_alive()
    assert calls == [1] and timer.runs == 1


def test_stop_during_a_failing_run_ends_the_timer():
    entered, release = threading.Event(), threading.Event()

    def failing():
        entered.set()
        release.wait(5)
        raise RuntimeError("gone")

    timer = periodic.PeriodicTimer("failing", 30, failing).start()
    assert entered.wait(5)
    timer.stop(timeout=0)
    release.set()
    timer._thread.join(5)
    assert not timer._thread.is_alive()
    assert timer.runs == 1


def test_a_timer_can_stop_itself():
    calls = []
    holder = {}

    def once():
        calls.append(1)
        holder["timer"].stop(timeout=1)

    holder["timer"] = timer = periodic.PeriodicTimer("once", 0.01, once)
    timer.start()
    timer._thread.join(5)
    assert not timer._thread.is_alive()
    assert calls == [1] and timer.stopped


def test_stop_twice_and_before_start_are_harmless():
    timer = periodic.PeriodicTimer("unstarted", 1, lambda: None)
    timer.stop(timeout=1)
    timer.stop(timeout=1)
    assert timer.stopped and timer.runs == 0


@pytest.mark.parametrize("interval", [0, -1])
def test_interval_must_be_positive(interval):
    with pytest.raises(ValueError, match="interval must be positive"):
        periodic.PeriodicTimer("bad", interval, lambda: None)


def test_one_thread_per_timer(timers):
    before = threading.active_count()
    for i in range(4):
        timers("t%d" % i, 0.05, lambda: None)
    assert threading.active_count() - before == 4
