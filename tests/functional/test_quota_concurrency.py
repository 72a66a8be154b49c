"""Quota reservation under real concurrency (issue 2, "Done means").

50 workers reserve against a limit that only lets some of them through: threads on SQLite,
MariaDB and PostgreSQL, and separate processes (each with its own ``Database`` built from the
URL) on MariaDB and PostgreSQL. Each test prints how many workers succeeded and asserts the
exact number; the total reserved + in use never exceeds the limit. A mixed test runs creates
(row + usage in one transaction) against deletes (negative reservation committed with the
soft delete) and ends with usage equal to the truth recomputed from the tables.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import queue
import threading
import time
import uuid

import pytest

from blockmgr import exception
from blockmgr.db import models
from blockmgr.db.session import Database
from blockmgr.quota import QuotaEngine

WORKERS = 50
LIMIT = 20
PROJECT = "project-concurrency"

#: ``forkserver`` imports blockmgr once and forks clean children from it (no inherited
#: connections or threads, like ``spawn``), so 50 processes start in about a second instead
#: of paying 50 interpreter start-ups on a 2-core machine. ``spawn`` gives the same result.
START_METHOD = os.environ.get("BLOCKMGR_TEST_MP_START", "forkserver")


def _new_engine(db_url: str) -> tuple[Database, QuotaEngine]:
    """What each worker process builds for itself: its own Database and engine."""
    from oslo_config import cfg

    from blockmgr.conf import quota as quota_opts
    conf = cfg.ConfigOpts()
    quota_opts.register_opts(conf)
    conf(args=[], default_config_files=[])
    db = Database(db_url)
    return db, QuotaEngine(db, conf)


def _outcome(call) -> str:
    try:
        call()
        return "ok"
    except exception.OverQuota:
        return "over"
    except Exception as exc:  # reported, and failed on, by the test
        return "error: %r" % (exc,)


def _run_threads(targets) -> list[str]:
    """Start one thread per target, release them together; outcomes in target order."""
    barrier = threading.Barrier(len(targets))
    results: list[str] = ["error: did not finish"] * len(targets)

    def run(index, target):
        barrier.wait(timeout=60)
        results[index] = _outcome(target)

    threads = [threading.Thread(target=run, args=(i, t)) for i, t in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    return results


class _Monitor:
    """Samples ``in_use + reserved`` while workers run; remembers the largest value seen."""

    def __init__(self, engine: QuotaEngine, resource: str):
        self._engine, self._resource = engine, resource
        self._stop = threading.Event()
        self.peak = 0
        self.samples = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            usage = self._engine.get_usages(PROJECT)[self._resource]
            self.peak = max(self.peak, usage["in_use"] + usage["reserved"])
            self.samples += 1
            time.sleep(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _assert_no_errors(results):
    errors = [r for r in results if r.startswith("error")]
    assert not errors, errors


@pytest.fixture
def quota(db_url):
    db, engine = _new_engine(db_url)
    db.create_schema()
    yield db, engine
    db.dispose()


# --- threads, every database ------------------------------------------------------------------

def test_threads_reserve_exactly_up_to_the_limit(quota, db_backend):
    db, engine = quota
    engine.set_limit(PROJECT, "volumes", LIMIT)
    with _Monitor(engine, "volumes") as monitor:
        results = _run_threads([lambda: engine.reserve(PROJECT, volumes=1)] * WORKERS)
    _assert_no_errors(results)
    succeeded = results.count("ok")
    print("\n[%s] threads: %d of %d reservations succeeded against a limit of %d "
          "(peak in_use+reserved %d over %d samples)"
          % (db_backend, succeeded, WORKERS, LIMIT, monitor.peak, monitor.samples))
    assert succeeded == LIMIT
    assert results.count("over") == WORKERS - LIMIT
    assert monitor.peak <= LIMIT
    assert engine.get_usages(PROJECT)["volumes"] == {"in_use": 0, "reserved": LIMIT,
                                                     "limit": LIMIT}
    assert engine.check(PROJECT) == []


def test_threads_mixed_sizes_never_pass_the_gigabytes_limit(quota, db_backend):
    db, engine = quota
    limit = 100
    engine.set_limit(PROJECT, "gigabytes", limit)
    sizes = [1 + i % 10 for i in range(WORKERS)]  # 275 GiB asked in total
    results = _run_threads([lambda s=s: engine.reserve(PROJECT, gigabytes=s) for s in sizes])
    _assert_no_errors(results)
    granted = sum(size for size, r in zip(sizes, results) if r == "ok")
    usage = engine.get_usages(PROJECT)["gigabytes"]
    print("\n[%s] threads: %d of %d mixed-size reservations succeeded, %d of %d GiB reserved"
          % (db_backend, results.count("ok"), WORKERS, usage["reserved"], limit))
    assert usage["reserved"] == granted <= limit
    assert engine.check(PROJECT) == []  # reserved equals the live reservations exactly
    # Every refusal was justified: a worker refused at any point saw at most the final
    # usage, so its size must not fit into what is left at the end either.
    free_at_end = limit - usage["reserved"]
    refused = [size for size, r in zip(sizes, results) if r == "over"]
    assert all(size > free_at_end for size in refused), (refused, free_at_end)


# --- processes, server databases --------------------------------------------------------------

def _process_worker(db_url, deltas, barrier, results):
    db, engine = _new_engine(db_url)
    try:
        barrier.wait(timeout=120)
        results.put(_outcome(lambda: engine.reserve(PROJECT, **deltas)))
    finally:
        db.dispose()


@pytest.mark.parametrize("db_backend", ["mysql", "postgresql"], indirect=True)
def test_processes_reserve_exactly_up_to_the_limit(quota, db_backend, db_url):
    db, engine = quota
    engine.set_limit(PROJECT, "volumes", LIMIT)
    ctx = multiprocessing.get_context(START_METHOD)
    if START_METHOD == "forkserver":
        ctx.set_forkserver_preload([__name__])
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    started = time.monotonic()
    procs = [ctx.Process(target=_process_worker,
                         args=(db_url, {"volumes": 1, "gigabytes": 2}, barrier, results))
             for _ in range(WORKERS)]
    for proc in procs:
        proc.start()
    outcomes = []
    for _ in procs:
        try:
            outcomes.append(results.get(timeout=180))
        except queue.Empty:
            break
    for proc in procs:
        proc.join(timeout=30)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    assert len(outcomes) == WORKERS
    _assert_no_errors(outcomes)
    succeeded = outcomes.count("ok")
    print("\n[%s] %d processes (%s): %d succeeded against a limit of %d volumes in %.1f s"
          % (db_backend, WORKERS, START_METHOD, succeeded, LIMIT,
             time.monotonic() - started))
    assert succeeded == LIMIT
    usages = engine.get_usages(PROJECT)
    assert usages["volumes"]["reserved"] == LIMIT and usages["volumes"]["in_use"] == 0
    assert usages["gigabytes"]["reserved"] == 2 * LIMIT  # refused requests reserved nothing
    assert engine.check(PROJECT) == []


# --- mixed creates and deletes with real rows, every database ---------------------------------

def test_mixed_creates_and_deletes_end_with_usage_equal_to_truth(quota, db_backend):
    """Creates take quota with the row insert (API path); deletes reserve a negative delta
    owned by a "flow" and commit it in the transaction that soft-deletes the row."""
    db, engine = quota
    engine.set_limit(PROJECT, "volumes", LIMIT)
    existing = []
    for size in range(1, 11):
        existing.append(engine.run_in_transaction(lambda s, size=size: _create(engine, s, size)))
    creates, deletes = WORKERS - len(existing), len(existing)

    def create(size):
        return lambda: engine.run_in_transaction(lambda s: _create(engine, s, size))

    def delete(volume_id, size):
        def run():
            flow_id = str(uuid.uuid4())
            engine.reserve(PROJECT, owner=flow_id, volumes=-1, gigabytes=-size)
            engine.run_in_transaction(lambda s: _delete(engine, s, volume_id, flow_id))
        return run

    targets = [create(1 + i % 5) for i in range(creates)]
    targets += [delete(vid, size) for size, vid in enumerate(existing, start=1)]
    with _Monitor(engine, "volumes") as monitor:
        results = _run_threads(targets)
    _assert_no_errors(results)
    created = results.count("ok") - deletes
    usages = engine.get_usages(PROJECT)
    print("\n[%s] mixed: %d of %d creates and %d of %d deletes succeeded; volumes in_use %d "
          "(limit %d, peak in_use+reserved %d)"
          % (db_backend, created, creates, deletes, deletes, usages["volumes"]["in_use"],
             LIMIT, monitor.peak))
    assert results.count("over") == creates - created  # only creates may be refused
    # 10 slots were free before any delete and 10 more free up: between 10 and 20 creates fit.
    assert LIMIT - len(existing) <= created <= LIMIT
    assert monitor.peak <= LIMIT
    assert usages["volumes"] == {"in_use": created, "reserved": 0, "limit": LIMIT}
    assert engine.check(PROJECT) == []  # usage equals the truth recomputed from the rows
    assert engine.reservations_of("nobody") == []


def _create(engine: QuotaEngine, session, size: int) -> str:
    engine.consume(session, PROJECT, volumes=1, gigabytes=size)
    row = models.Volume(project_id=PROJECT, size=size, status="available")
    session.add(row)
    session.flush()
    return row.id


def _delete(engine: QuotaEngine, session, volume_id: str, flow_id: str) -> None:
    assert engine.commit_owned(flow_id, session=session) == 2
    row = session.get(models.Volume, volume_id)
    row.status = "deleting"
    row.status = "deleted"
    row.deleted = True
    row.deleted_at = models.utcnow()
    session.flush()


# --- the rest of the engine on every database ---------------------------------------------------

def test_housekeeping_and_reconciliation_on_every_database(quota, db_backend):
    """The non-concurrent paths, once per database: joined reserve, expiry, orphan release
    by owner liveness, limit override, and check/sync against real rows."""
    db, engine = quota
    past = models.utcnow() - dt.timedelta(minutes=5)
    engine.set_limit(PROJECT, "gigabytes", 50)
    engine.set_limit(PROJECT, "gigabytes", 60)
    with db.writer() as s:
        engine.reserve(PROJECT, volumes=1, gigabytes=10, owner="live-flow", session=s)
    engine.reserve(PROJECT, gigabytes=20, owner="dead-flow")
    engine.reserve(PROJECT, gigabytes=5, expire=past)
    with pytest.raises(exception.OverQuota):
        engine.reserve(PROJECT, gigabytes=26)
    assert engine.expire(is_owner_live=lambda owner: True) == 1
    assert len(engine.release_orphans(lambda owner: owner == "live-flow")) == 1
    assert engine.get_usages(PROJECT)["gigabytes"] == {"in_use": 0, "reserved": 10,
                                                       "limit": 60}
    with db.writer() as s:
        s.add(models.Volume(project_id=PROJECT, size=10, status="available"))
    assert engine.commit_owned("live-flow") == 2
    assert engine.check() == []
    with db.writer() as s:
        s.add(models.Volume(project_id="other", size=3, status="available"))
    drifts = engine.check()
    assert {(d.project_id, d.resource, d.expected) for d in drifts} == {
        ("other", "volumes", 1), ("other", "gigabytes", 3)}
    assert engine.sync() == drifts
    assert engine.check() == []
    engine.reset_limit(PROJECT, "gigabytes")
    assert engine.get_limits(PROJECT)["gigabytes"] == 1000
