"""Start-up recovery of many unfinished flows at once (``recovery.recover_flows``).

The crash is made in-process: a worker's create flows block inside their driver call (each
flow has committed its driver task ``RUNNING``), and the SQLite database is copied at that
moment with SQLite's online backup -- what a restarted worker would find had the process
died there. A fresh manager on the copy then recovers. The blocked worker is released at
the end and writes only to the original file.
"""

from __future__ import annotations

import sqlite3
import threading

import pytest
import sqlalchemy as sa

from blockmgr import context as bm_context
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.db.session import Database
from blockmgr.notifications import MemoryNotifier
from blockmgr.quota import QuotaEngine
from blockmgr.testing.fake_driver import FakeDriver
from blockmgr.volume import locks as bm_locks
from blockmgr.volume import recovery
from blockmgr.volume.manager import VolumeManager

PROJECT = "p1"
CTX = bm_context.RequestContext(project_id=PROJECT, user_id="u1")
#: Failure guard only (a broken implementation must not hang the suite), never a speed check.
GUARD_S = 20


class GatedDriver(FakeDriver):
    """FakeDriver whose ``create_volume`` first runs ``before(volume)`` outside the fake's
    own lock (FakeDriver serialises its calls), so calls can wait concurrently."""

    def __init__(self, *args, before=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.before = before

    def create_volume(self, volume):
        if self.before is not None:
            self.before(volume)
        return super().create_volume(volume)


def _manager(conf, db, driver, locks=None):
    return VolumeManager(conf, "fake", db=db, driver=driver, quota=QuotaEngine(db, conf),
                         notifier=MemoryNotifier(), locks=locks)


def _volume(db, quota, **values):
    with db.writer() as session:
        row = repository.create(session, models.Volume, status="creating", size=1,
                                host="node1@fake#pool", project_id=PROJECT, **values)
        quota.consume(session, PROJECT, volumes=1, gigabytes=1)
        return row.id


@pytest.fixture
def crashed(conf, tmp_path):
    """``crash(count) -> (copy Database, [volume ids])``: ``count`` creates left in flight."""
    conf.set_override("host", "node1")
    url = "sqlite:///%s" % (tmp_path / "live.sqlite")
    conf.set_override("connection", url, group="database")
    conf.set_override("volumes", -1, group="quota")
    live = Database(url)
    live.create_schema()
    gate, entered = threading.Event(), threading.Semaphore(0)

    def block(volume):
        entered.release()
        gate.wait(GUARD_S)

    worker = _manager(conf, live, GatedDriver(None, "fake", host="node1@fake", before=block))
    opened = [live]

    def crash(count):
        ids = [_volume(live, worker.quota) for _ in range(count)]
        for vid in ids:
            threading.Thread(target=_swallow, args=(worker.create_volume, CTX, vid),
                             daemon=True).start()
        for _ in ids:
            assert entered.acquire(timeout=GUARD_S), "a create never reached its driver call"
        copy = tmp_path / "restarted.sqlite"
        src, dst = sqlite3.connect(tmp_path / "live.sqlite"), sqlite3.connect(copy)
        with dst:
            src.backup(dst)
        src.close()
        dst.close()
        restarted = Database("sqlite:///%s" % copy)
        opened.append(restarted)
        conf.set_override("connection", "sqlite:///%s" % copy, group="database")
        return restarted, ids

    yield crash
    gate.set()
    for db in opened:
        db.dispose()


def _swallow(fn, *args):
    try:
        fn(*args)
    except Exception:   # noqa: BLE001 - the "dead" worker's late end is irrelevant
        pass


def _statuses(db, ids):
    with db.reader() as session:
        return {vid: repository.get(session, models.Volume, vid).status for vid in ids}


def _unfinished(manager):
    return manager.runner.backend.unfinished_flow_uuids()


def test_unfinished_flows_are_recovered_concurrently_each_holding_its_lock(conf, crashed):
    db, ids = crashed(12)
    conf.set_override("recovery_workers", 4, group="flows")
    barrier = threading.Barrier(2, timeout=GUARD_S)   # breaks unless 2 resumes overlap
    seen, guard = [], threading.Lock()
    locks = bm_locks.LockRegistry()

    def before(volume):
        with guard:
            seen.append((volume.id, volume.id in locks.held_names()))
            first_two = len(seen) <= 2
        if first_two:
            barrier.wait()

    manager = _manager(conf, db, GatedDriver(None, "fake", host="node1@fake", before=before),
                       locks=locks)
    assert len(_unfinished(manager)) == 12
    report = manager.init_host()

    assert len(report.resumed) == 12 and report.failed == [] and report.reverted == []
    assert sorted(v for v, _held in seen) == sorted(ids)
    assert all(held for _v, held in seen), "a resumed flow ran without its resource's lock"
    assert set(_statuses(db, ids).values()) == {"available"}
    assert _unfinished(manager) == set()
    assert manager.quota.check() == []
    assert locks.held_names() == set()


def test_one_flow_failing_to_recover_does_not_stop_the_others(conf, crashed):
    db, ids = crashed(6)
    conf.set_override("recovery_workers", 3, group="flows")
    manager = _manager(conf, db, FakeDriver(None, "fake", host="node1@fake"))
    doomed = next(d for d in manager.runner.unfinished()
                  if d.meta["resource_id"] == ids[2]).uuid
    real_resume = manager.runner.resume

    def resume(detail, runtime):
        if detail.uuid == doomed:
            raise RuntimeError("logbook unreadable")
        return real_resume(detail, runtime)

    manager.runner.resume = resume
    report = recovery.RecoveryReport()
    recovery.recover_flows(manager, manager.runner.unfinished(), report)

    assert report.failed == [doomed]
    assert len(report.resumed) == 5
    assert _unfinished(manager) == {doomed}     # left for the next start
    statuses = _statuses(db, ids)
    assert statuses.pop(ids[2]) == "creating"
    assert set(statuses.values()) == {"available"}


def test_serial_setting_recovers_one_flow_at_a_time(conf, crashed):
    db, ids = crashed(4)
    conf.set_override("recovery_workers", 1, group="flows")
    threads = set()
    driver = GatedDriver(None, "fake", host="node1@fake",
                         before=lambda v: threads.add(threading.current_thread().name))
    report = _manager(conf, db, driver).init_host()
    assert len(report.resumed) == 4
    assert threads == {threading.current_thread().name}


def test_default_workers_follow_the_rpc_worker_threads(conf):
    conf.set_override("rpc_worker_threads", 7)
    assert recovery.recovery_workers(conf) == 7
    conf.set_override("recovery_workers", 3, group="flows")
    assert recovery.recovery_workers(conf) == 3


# --- which flows may run side by side ---------------------------------------------------


def _detail(uuid, factory, resource_id, store):
    from taskflow.persistence import models as tf_models

    fd = tf_models.FlowDetail("f", uuid=uuid)
    fd.meta = {"factory": {"name": "blockmgr.flows.%s.get_flow" % factory},
               "resource_id": resource_id}
    injector = tf_models.TaskDetail("_TaskFlow_INJECTOR", uuid=uuid + "-inj")
    injector.results = store
    fd.add(injector)
    return fd


def test_flows_sharing_a_lock_form_one_group_in_their_order():
    a = _detail("a", "create_volume", "v1", {"request_spec": {"snapshot_id": "s1"}})
    b = _detail("b", "delete_snapshot", "s1", {})
    c = _detail("c", "create_volume", "v2", {"request_spec": {}})
    d = _detail("d", "extend_volume", "v1", {})     # same resource as a
    e = _detail("e", "create_volume", "v3", {"request_spec": {"source_volid": "v2"}})
    f = _detail("f", "delete_volume", "v2", {})     # v2-delete_volume, as e's clone lock
    details = [a, b, c, d, e, f]
    names = {x.uuid: recovery.lock_names(None, x) for x in details}
    assert names["a"] == ["v1", "s1-delete_snapshot"]
    assert names["b"] == ["s1", "s1-delete_snapshot"]
    groups = recovery.conflict_groups(details, names)
    assert [[x.uuid for x in g] for g in groups] == [["a", "b", "d"], ["c", "e", "f"]]


# --- the names match what the endpoints hold --------------------------------------------


class RecordingLocks(bm_locks.LockRegistry):
    def __init__(self):
        super().__init__()
        self.held: list[list[str]] = []

    def hold(self, names):
        self.held.append(sorted(set(names)))
        return super().hold(names)


def test_lock_names_are_those_the_endpoint_held(conf, sqlite_database):
    """For each endpoint: the names recovery rebuilds from the persisted flow detail are the
    ones the request held (flows are kept: finished_flow_retention = -1)."""
    conf.set_override("host", "node1")
    conf.set_override("connection", sqlite_database.url, group="database")
    conf.set_override("finished_flow_retention", -1, group="flows")
    locks = RecordingLocks()
    db = sqlite_database
    manager = _manager(conf, db, FakeDriver(None, "fake", host="node1@fake"), locks=locks)
    manager.init_host()

    def snapshot(volume_id):
        with db.writer() as session:
            snap = repository.create(session, models.Snapshot, volume_id=volume_id,
                                     status="creating", volume_size=1, project_id=PROJECT)
            manager.quota.consume(session, PROJECT, snapshots=1, gigabytes=1)
            return snap.id

    def set_status(model, rid, *statuses):
        with db.writer() as session:
            row = repository.get(session, model, rid)
            for status in statuses:
                repository.update(session, row, status=status)

    vid = _volume(db, manager.quota)
    manager.create_volume(CTX, vid)
    sid = snapshot(vid)
    manager.create_snapshot(CTX, sid)
    clone = _volume(db, manager.quota)
    manager.create_volume(CTX, clone, {"source_volid": vid})
    from_snap = _volume(db, manager.quota)
    manager.create_volume(CTX, from_snap, {"snapshot_id": sid})
    set_status(models.Snapshot, sid, "deleting")
    manager.delete_snapshot(CTX, sid)
    sid2 = snapshot(vid)
    manager.create_snapshot(CTX, sid2)
    set_status(models.Snapshot, sid2, "deleting")
    set_status(models.Volume, vid, "deleting")
    manager.delete_volume(CTX, vid, cascade=True)

    fd_t = sa.table("flowdetails", sa.column("uuid"))
    with db.engine.connect() as conn:
        uuids = [r.uuid for r in conn.execute(sa.select(fd_t.c.uuid))]
    details = manager.runner.load_details(uuids)
    assert len(details) == len(locks.held) == 7
    for detail in details:
        names = sorted(set(recovery.lock_names(manager, detail)))
        if detail.meta["factory"]["name"].endswith("delete_volume.get_flow"):
            # Cascade: its snapshot is deleted by now, so only the volume's names remain.
            [held] = [h for h in locks.held if "%s-delete_volume" % vid in h and vid in h]
            assert names == [vid, "%s-delete_volume" % vid] and set(names) <= set(held)
        else:
            assert names in locks.held, (detail.meta, names, locks.held)
