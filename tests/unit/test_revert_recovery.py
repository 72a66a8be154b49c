"""Recovery at worker start and a revert: a volume left ``reverting`` and its snapshot left
``restoring`` without a flow or a request are orphans, settled to ``error`` (the data may
have changed) and ``available`` (a revert never loses its snapshot)."""

from __future__ import annotations

from blockmgr.db import models
from blockmgr.volume import recovery
from tests.unit.flows.test_delete_volume import build_env, get, make_snapshot, make_volume, \
    set_status


def test_orphaned_revert_statuses_are_settled_at_start(sqlite_database, conf):
    env = build_env(sqlite_database, conf)
    vid = make_volume(env)
    sid = make_snapshot(env, vid)
    set_status(env, models.Snapshot, sid, "restoring")
    set_status(env, models.Volume, vid, "reverting")

    build_env(sqlite_database, conf)        # a new worker: init_host runs recovery

    assert get(env, models.Volume, vid).status == "error"
    assert "left reverting" in get(env, models.Volume, vid).status_reason
    assert get(env, models.Snapshot, sid).status == "available"


def test_a_revert_whose_request_is_open_keeps_both_rows_for_it(sqlite_database, conf):
    """The volume's request is still open (not run yet): recovery leaves the volume
    ``reverting`` and its snapshot ``restoring`` (so nobody can delete the snapshot
    meanwhile); running the request then reverts."""
    from blockmgr.db import requests as db_requests
    from tests.unit.flows.test_delete_volume import CTX

    env = build_env(sqlite_database, conf)
    vid = make_volume(env)
    sid = make_snapshot(env, vid)
    set_status(env, models.Snapshot, sid, "restoring")
    set_status(env, models.Volume, vid, "reverting")
    with env.db.writer() as session:
        db_requests.add(session, kind="volume", resource_id=vid, action="revert_to_snapshot",
                        arguments={"volume_id": vid, "snapshot_id": sid},
                        context=CTX.to_dict(), target=env.host)

    build_env(sqlite_database, conf)        # a restart: recovery

    assert get(env, models.Volume, vid).status == "reverting"
    assert get(env, models.Snapshot, sid).status == "restoring"
    env.revert_to_snapshot(CTX, vid, sid)     # the request, run (this driver has the data)
    assert get(env, models.Volume, vid).status == "available"
    assert get(env, models.Snapshot, sid).status == "available"


def test_a_revert_request_settled_as_failed_gives_the_snapshot_back(sqlite_database, conf):
    env = build_env(sqlite_database, conf)
    vid = make_volume(env)
    sid = make_snapshot(env, vid)
    other = make_snapshot(env, vid)
    set_status(env, models.Snapshot, sid, "restoring")
    set_status(env, models.Volume, vid, "reverting")

    target = recovery.settle_failed(env.db, env.quota, "volume", vid, "req-1", "broker gone")

    assert target == "error"
    assert "broker gone" in get(env, models.Volume, vid).status_reason
    assert get(env, models.Snapshot, sid).status == "available"
    assert get(env, models.Snapshot, other).status == "available"


def test_every_transitional_status_has_an_orphan_status():
    from blockmgr import states

    for kind, statuses in states.TRANSITIONAL.items():
        assert set(statuses) <= set(recovery.ORPHAN_STATUS[kind]), kind


def test_recovery_holds_the_locks_the_revert_request_held(conf, sqlite_database):
    """A revert resumed at start holds what the endpoint held: the volume, its
    ``-delete_volume`` lock and the snapshot's ``-delete_snapshot`` lock."""
    from blockmgr.notifications import MemoryNotifier
    from blockmgr.quota import QuotaEngine
    from blockmgr.testing.fake_driver import FakeDriver
    from blockmgr.volume.manager import VolumeManager
    from tests.unit.flows.test_delete_volume import CTX
    from tests.unit.test_recovery_parallel import RecordingLocks

    conf.set_override("host", "node1")
    conf.set_override("connection", sqlite_database.url, group="database")
    conf.set_override("finished_flow_retention", -1, group="flows")
    locks = RecordingLocks()
    env = VolumeManager(conf, "fake", db=sqlite_database,
                        driver=FakeDriver(None, "fake", host="node1@fake"),
                        quota=QuotaEngine(sqlite_database, conf), notifier=MemoryNotifier(),
                        locks=locks)
    env.init_host()
    vid = make_volume(env)
    sid = make_snapshot(env, vid)
    set_status(env, models.Snapshot, sid, "restoring")
    set_status(env, models.Volume, vid, "reverting")
    del locks.held[:]
    env.revert_to_snapshot(CTX, vid, sid)
    [held] = locks.held
    assert held == sorted({vid, vid + "-delete_volume", sid + "-delete_snapshot"})
    details = [d for d in env.runner.load_details(_flow_uuids(sqlite_database))
               if d.meta["factory"]["name"].endswith("revert_to_snapshot.get_flow")]
    assert len(details) == 1
    assert sorted(set(recovery.lock_names(env, details[0]))) == held


def _flow_uuids(db):
    import sqlalchemy as sa

    fd_t = sa.table("flowdetails", sa.column("uuid"))
    with db.engine.connect() as conn:
        return [r.uuid for r in conn.execute(sa.select(fd_t.c.uuid))]
