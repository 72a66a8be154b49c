"""Behaviours of docs/behaviours.md that no other test proved (traceability: docs/behaviours.md).

Driven through ``VolumeManager`` in-process on SQLite with the fake driver (failures
injected) and the real quota engine, like ``tests/unit/test_manager.py``.

The manage-existing tests after a *successful* bind check the concern that the flow writes
the adopted size before the quota commit: if anything later fails, the row must go back to
the size the API charged, or ``QuotaEngine.check()`` (whose truth sums the sizes of
non-deleted volumes, ``error_managing`` ones included) would report drift.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import manage_existing as manage_flow
from blockmgr.interface.objects import SnapshotView
from blockmgr.notifications import MemoryNotifier
from blockmgr.quota import QuotaEngine
from blockmgr.testing.fake_driver import FakeDriver
from blockmgr.volume.manager import VolumeManager

GiB = 1024 ** 3
PROJECT = "p1"
CTX = bm_context.RequestContext(project_id=PROJECT, user_id="u1")


class Scheduler:
    """Records reschedule casts."""

    def __init__(self):
        self.casts = []

    def __call__(self, context, volume_id, request_spec, filter_properties):
        self.casts.append(volume_id)


@pytest.fixture
def env(sqlite_database, conf):
    conf.set_override("host", "node1")
    conf.set_override("connection", sqlite_database.url, group="database")
    manager = VolumeManager(conf, "fake", db=sqlite_database,
                            driver=FakeDriver(None, "fake", host="node1@fake"),
                            quota=QuotaEngine(sqlite_database, conf),
                            notifier=MemoryNotifier(), reschedule=Scheduler())
    manager.init_host()
    return manager


def _volume(env, status="creating", size=1):
    """A row as the API leaves it, with the API's committed quota."""
    with env.db.writer() as session:
        row = repository.create(session, models.Volume, status=status, size=size,
                                host=env.host + "#pool", project_id=PROJECT)
        env.quota.consume(session, PROJECT, volumes=1, gigabytes=size)
        return row.id


def _get(env, model, resource_id):
    with env.db.reader() as session:
        row = repository.get(session, model, resource_id, read_deleted=True)
        session.expunge(row)
        return row


def _usage(env, resource="gigabytes"):
    usage = env.quota.get_usages(PROJECT)[resource]
    return usage["in_use"], usage["reserved"]


def _assert_settled(env):
    """Quota equals the recomputed truth, nothing reserved, no flow left unfinished."""
    assert env.quota.check() == []
    with env.db.reader() as session:
        live = session.scalars(sa.select(models.Reservation)
                               .where(models.Reservation.deleted.is_(False))).all()
    assert live == []
    assert env.runner.backend.unfinished_flow_uuids() == set()


def _fail_commit(env, monkeypatch):
    def broken(owner, **kwargs):
        raise exception.BackendUnavailable(backend="database", reason="connection lost")
    monkeypatch.setattr(env.quota, "commit_owned", broken)


# --- behaviour 3: a NotFound from the driver is not rescheduled ----------------------------------

def test_create_volume_not_found_is_not_rescheduled_and_keeps_capacity(env):
    vid = _volume(env, size=2)
    env.driver.inject_failure("create_volume", exception.VolumeNotFound(volume_id=vid))
    with pytest.raises(exception.VolumeNotFound):
        env.create_volume(CTX, vid, request_spec={},
                          filter_properties={"retry": {"num_attempts": 1, "backends": []}})
    assert _get(env, models.Volume, vid).status == "error"
    assert env.reschedule.casts == []
    assert env.capacity.get("pool") == 2
    _assert_settled(env)


# --- behaviour 4: the snapshot cannot be deleted while a volume is created from it ---------------

def test_create_from_snapshot_holds_the_delete_snapshot_lock(env):
    src = _volume(env)
    env.create_volume(CTX, src)
    with env.db.writer() as session:
        snap = repository.create(session, models.Snapshot, volume_id=src, status="available",
                                 volume_size=1, project_id=PROJECT)
        sid = snap.id
    env.driver.create_snapshot(SnapshotView(id=sid, volume_id=src, volume_size=1))
    held = []
    env.driver.inject_failure("create_volume_from_snapshot",
                              lambda call: held.append(env.locks.held_names()))
    vid = _volume(env)
    env.create_volume(CTX, vid, request_spec={"snapshot_id": sid})
    assert {vid, "%s-delete_snapshot" % sid} <= held[0]
    assert env.locks.held_names() == set()


# --- behaviour 7 after a successful bind: size restored, object unmanaged, no quota drift --------

def test_manage_existing_commit_failure_unmanages_and_restores_the_size(env, monkeypatch):
    ref = env.driver.seed_foreign_volume(int(1.5 * GiB), name="lv-import")
    vid = _volume(env, status="managing", size=0)
    _fail_commit(env, monkeypatch)
    with pytest.raises(exception.BackendUnavailable):
        env.manage_existing(CTX, vid, ref)
    monkeypatch.undo()
    row = _get(env, models.Volume, vid)
    assert (row.status, row.size) == ("error_managing", 0)
    assert len(env.driver.calls_to("restore_managed_name")) == 1   # given back, never deleted
    assert "lv-import" in env.driver.volumes and "volume-%s" % vid not in env.driver.volumes
    assert env.driver.calls_to("delete_volume") == []
    assert _usage(env) == (0, 0) and _usage(env, "volumes") == (1, 0)
    assert "volume.manage_existing.end" not in env.notifier.types()
    assert "volume.manage_existing.error" in env.notifier.types()
    _assert_settled(env)


def test_manage_existing_that_cannot_become_available_charges_nothing(env, monkeypatch):
    """The write of ``available`` fails after the bind: whether it shares the quota
    commit's transaction (rolled back together) or follows it (the commit compensated by
    the revert), the usage ends where it began and the row at the size the API charged."""
    ref = env.driver.seed_foreign_volume(3 * GiB, name="lv-import")
    vid = _volume(env, status="managing", size=0)
    real = manage_flow.repository.finish

    def refuse_available(session, model, resource_id, status, **kwargs):
        if status == "available":
            raise exception.BackendUnavailable(backend="database", reason="connection lost")
        return real(session, model, resource_id, status, **kwargs)

    monkeypatch.setattr(manage_flow.repository, "finish", refuse_available)
    with pytest.raises(exception.BackendUnavailable):
        env.manage_existing(CTX, vid, ref)
    monkeypatch.undo()
    row = _get(env, models.Volume, vid)
    assert (row.status, row.size) == ("error_managing", 0)
    assert _usage(env) == (0, 0)
    assert len(env.driver.calls_to("restore_managed_name")) == 1
    assert "lv-import" in env.driver.volumes
    _assert_settled(env)


def test_manage_existing_snapshot_commit_failure_restores_the_charged_size(env, monkeypatch):
    vid = _volume(env, size=5)
    env.create_volume(CTX, vid)
    with env.db.writer() as session:
        snap = repository.create(session, models.Snapshot, volume_id=vid, status="creating",
                                 volume_size=5, project_id=PROJECT)
        env.quota.consume(session, PROJECT, snapshots=1, gigabytes=5)
        sid = snap.id
    ref = env.driver.seed_foreign_snapshot("volume-%s" % vid, 2 * GiB, name="snap-import")
    _fail_commit(env, monkeypatch)
    with pytest.raises(exception.BackendUnavailable):
        env.manage_existing_snapshot(CTX, sid, ref)
    monkeypatch.undo()
    row = _get(env, models.Snapshot, sid)
    assert (row.status, row.volume_size) == ("error_managing", 5)
    assert len(env.driver.calls_to("restore_managed_snapshot_name")) == 1
    assert "snap-import" in env.driver.snapshots
    assert env.driver.calls_to("delete_snapshot") == []
    assert _usage(env) == (10, 0) and _usage(env, "snapshots") == (1, 0)
    _assert_settled(env)


# --- a driver that binds and then fails must not leave the data exposed to a delete ---------

def test_manage_existing_driver_error_after_bind_gives_the_name_back(env):
    """Regression: the revert skipped unmanage for any driver failure, so an object already
    renamed to ``volume-<id>`` stayed bound to an ``error_managing`` row, and deleting that
    row would have deleted the imported data. Now the revert gives it its name back."""
    ref = env.driver.seed_foreign_volume(GiB, name="lv-import")
    vid = _volume(env, status="managing", size=0)
    env.driver.inject_failure(
        "manage_existing", exception.VolumeBackendAPIException(reason="reply lost"),
        when="after")
    with pytest.raises(exception.VolumeBackendAPIException):
        env.manage_existing(CTX, vid, ref)
    assert _get(env, models.Volume, vid).status == "error_managing"
    assert len(env.driver.calls_to("restore_managed_name")) == 1
    assert "lv-import" in env.driver.volumes
    assert env.driver.calls_to("delete_volume") == []
    _assert_settled(env)


def test_manage_existing_refused_reference_is_not_unmanaged(env):
    vid = _volume(env, status="managing", size=0)
    env.driver.inject_failure(
        "manage_existing", exception.ManageExistingInvalidReference(
            existing_ref={"source-name": "x"}, reason="no such object"))
    env.driver.seed_foreign_volume(GiB, name="x")
    with pytest.raises(exception.ManageExistingInvalidReference):
        env.manage_existing(CTX, vid, {"source-name": "x"})
    assert _get(env, models.Volume, vid).status == "error_managing"
    assert env.driver.calls_to("unmanage") == []
    assert env.driver.calls_to("restore_managed_name") == []
    _assert_settled(env)
