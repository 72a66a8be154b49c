"""A failed manage never destroys or hides the object the user pointed at.

Through the VolumeManager, on SQLite, with the real drivers: LVM over the recorded lvm2
(``tests/unit/test_lvm_recorded.FakeLVM``) and loopback over real files. A manage that fails
after the driver renamed the object (here: the quota commit raises) gives the object its
original name back; deleting the failed volume or snapshot afterwards never deletes it; a
manage request for a resource that is not being managed is refused before the driver is
touched; a failed cascade delete leaves every snapshot it took deletable again.
"""

from __future__ import annotations

import os

import pytest

from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.drivers import command as command_mod
from blockmgr.drivers.lvm.driver import LVMDriver
from blockmgr.flows import manage_existing
from blockmgr.flows import manage_existing_snapshot
from blockmgr.notifications import MemoryNotifier
from blockmgr.quota import QuotaEngine
from blockmgr.volume.manager import VolumeManager
from tests.unit import test_loopback_driver as lb
from tests.unit import test_lvm_recorded as rec
from tests.unit.flows.test_delete_volume import (build_env, get, make_snapshot, make_volume,
                                                 set_status)

GiB = 1024 ** 3
PROJECT = "p1"
CTX = bm_context.RequestContext(project_id=PROJECT, user_id="u1")


def _manager(db, conf, driver, backend):
    conf.set_override("host", "node1")
    conf.set_override("connection", db.url, group="database")
    manager = VolumeManager(conf, backend, db=db, driver=driver,
                            quota=QuotaEngine(db, conf), notifier=MemoryNotifier())
    manager.init_host()
    return manager


@pytest.fixture
def fake_lvm(monkeypatch):
    fake = rec.FakeLVM()
    monkeypatch.setattr(command_mod.processutils, "execute", fake)
    return fake


@pytest.fixture
def lvm(sqlite_database, conf, fake_lvm):
    driver = LVMDriver(rec.make_config(volume_group=rec.VG), "lvm-1", host="node1@lvm-1")
    return _manager(sqlite_database, conf, driver, "lvm-1")


@pytest.fixture
def loop(sqlite_database, conf, tmp_path):
    return _manager(sqlite_database, conf, lb.make_driver(tmp_path / "lb"), lb.BACKEND)


@pytest.fixture
def commit_fails(monkeypatch):
    """The quota commit of both manage flows raises (a database error after the rename)."""
    def broken(*args, **kwargs):
        raise exception.BlockmgrError("database went away")
    monkeypatch.setattr(manage_existing.QuotaCommitTask, "execute", broken)
    monkeypatch.setattr(manage_existing_snapshot.QuotaCommitTask, "execute", broken)


def _managing_volume(manager) -> str:
    with manager.db.writer() as session:
        row = repository.create(session, models.Volume, status="managing", size=0,
                                host=manager.host + "#pool", project_id=PROJECT)
        manager.quota.consume(session, PROJECT, volumes=1)
        return row.id


def _creating_snapshot(manager, volume_id, size=1) -> str:
    with manager.db.writer() as session:
        row = repository.create(session, models.Snapshot, volume_id=volume_id,
                                status="creating", volume_size=size, project_id=PROJECT)
        manager.quota.consume(session, PROJECT, snapshots=1, gigabytes=size)
        return row.id


def _available_volume(manager, size=1) -> str:
    with manager.db.writer() as session:
        row = repository.create(session, models.Volume, status="creating", size=size,
                                host=manager.host + "#pool", project_id=PROJECT)
        manager.quota.consume(session, PROJECT, volumes=1, gigabytes=size)
        vid = row.id
    manager.create_volume(CTX, vid)
    return vid


def _delete_failed_import(manager, volume_id):
    """What the API does for DELETE of an ``error_managing`` volume, then the worker."""
    set_status(manager, models.Volume, volume_id, "error_managing_deleting")
    assert manager.delete_volume(CTX, volume_id) is True
    assert get(manager, models.Volume, volume_id).status == "deleted"


def _delete_snapshot(manager, snapshot_id):
    set_status(manager, models.Snapshot, snapshot_id, "deleting")
    assert manager.delete_snapshot(CTX, snapshot_id) is True


def _delete_failed_snapshot_manage(manager, snapshot_id):
    """What the API does for DELETE of an ``error_managing`` snapshot, then the worker."""
    assert get(manager, models.Snapshot, snapshot_id).status == "error_managing"
    set_status(manager, models.Snapshot, snapshot_id, "error_managing_deleting")
    assert manager.delete_snapshot(CTX, snapshot_id) is True
    assert get(manager, models.Snapshot, snapshot_id).status == "deleted"


def _in_use(manager) -> dict[str, int]:
    return {r: u["in_use"] for r, u in manager.quota.get_usages(PROJECT).items()
            if r in ("snapshots", "gigabytes")}


# --- LVM: deleting a failed import never destroys the user's LV ------------------------------

@pytest.mark.parametrize("by", ["source-name", "source-id"])
def test_lvm_failed_manage_gives_the_lv_its_name_back_and_delete_keeps_it(
        lvm, fake_lvm, commit_fails, by):
    fake_lvm.add_lv("legacy", GiB)
    ref = ({"source-name": "legacy"} if by == "source-name"
           else {"source-id": fake_lvm.lvs["legacy"]["lv_uuid"]})
    vid = _managing_volume(lvm)
    with pytest.raises(exception.BlockmgrError, match="database went away"):
        lvm.manage_existing(CTX, vid, ref)
    assert get(lvm, models.Volume, vid).status == "error_managing"
    assert "legacy" in fake_lvm.lvs and "volume-%s" % vid not in fake_lvm.lvs
    _delete_failed_import(lvm, vid)
    assert "legacy" in fake_lvm.lvs
    assert "lvremove" not in fake_lvm.tools() and "dd" not in fake_lvm.tools()


def test_lvm_delete_of_a_failed_import_whose_name_could_not_be_restored_keeps_the_lv(
        lvm, fake_lvm, commit_fails, monkeypatch):
    fake_lvm.add_lv("legacy", GiB)
    def restore_fails(self, volume, source_ref):
        raise exception.VolumeBackendAPIException(reason="lvrename failed")

    monkeypatch.setattr(LVMDriver, "restore_managed_name", restore_fails)
    vid = _managing_volume(lvm)
    with pytest.raises(exception.BlockmgrError):
        lvm.manage_existing(CTX, vid, {"source-name": "legacy"})
    assert "volume-%s" % vid in fake_lvm.lvs      # the restore failed: still renamed
    _delete_failed_import(lvm, vid)
    assert "volume-%s" % vid in fake_lvm.lvs      # ... but never wiped nor removed
    assert "lvremove" not in fake_lvm.tools() and "dd" not in fake_lvm.tools()


def test_lvm_failed_snapshot_manage_gives_the_lv_its_name_back_and_delete_keeps_it(
        lvm, fake_lvm, commit_fails):
    vid = _available_volume(lvm)
    fake_lvm.add_lv("mysnap", GiB, attr="swi-a-s---", origin="volume-%s" % vid,
                    origin_size=GiB)
    sid = _creating_snapshot(lvm, vid)
    with pytest.raises(exception.BlockmgrError, match="database went away"):
        lvm.manage_existing_snapshot(CTX, sid, {"source-name": "mysnap"})
    assert get(lvm, models.Snapshot, sid).status == "error_managing"
    assert "mysnap" in fake_lvm.lvs and "_snapshot-%s" % sid not in fake_lvm.lvs
    _delete_failed_snapshot_manage(lvm, sid)
    assert "mysnap" in fake_lvm.lvs
    assert "lvremove" not in fake_lvm.tools()


def test_lvm_delete_of_a_failed_snapshot_manage_whose_rename_back_failed_keeps_the_lv(
        lvm, fake_lvm, monkeypatch):
    """``lvrename`` fails while the manage is reverted: the LV keeps the snapshot's name
    (``unmanage_snapshot`` does nothing on LVM), the snapshot is ``error_managing``, and
    deleting it only unmanages: the user's LV is neither wiped nor removed; the quota the
    API charged is given back exactly."""
    vid = _available_volume(lvm)
    fake_lvm.add_lv("mysnap", GiB, attr="swi-a-s---", origin="volume-%s" % vid,
                    origin_size=GiB)
    sid = _creating_snapshot(lvm, vid)

    def commit_fails_then_lvrename_fails(*args, **kwargs):
        fake_lvm.fail["lvrename"] = (5, "  Internal error: lvrename failed")
        raise exception.BlockmgrError("database went away")

    monkeypatch.setattr(manage_existing_snapshot.QuotaCommitTask, "execute",
                        commit_fails_then_lvrename_fails)
    before = _in_use(lvm)
    with pytest.raises(exception.BlockmgrError, match="database went away"):
        lvm.manage_existing_snapshot(CTX, sid, {"source-name": "mysnap"})
    row = get(lvm, models.Snapshot, sid)
    assert row.status == "error_managing" and "database went away" in row.status_reason
    assert "_snapshot-%s" % sid in fake_lvm.lvs and "mysnap" not in fake_lvm.lvs
    assert _in_use(lvm) == before                  # the manage's own reservation rolled back
    del fake_lvm.fail["lvrename"]
    _delete_failed_snapshot_manage(lvm, sid)
    assert "_snapshot-%s" % sid in fake_lvm.lvs    # still there, never wiped nor removed
    assert "lvremove" not in fake_lvm.tools() and "dd" not in fake_lvm.tools()
    assert _in_use(lvm) == {"snapshots": before["snapshots"] - 1,
                            "gigabytes": before["gigabytes"] - 1}


def test_loopback_failed_snapshot_restore_still_releases_the_file(loop, commit_fails,
                                                                  monkeypatch):
    """If the name cannot be given back, the snapshot's file is released (unmanage) so that
    deleting the snapshot in error cannot reach it."""
    def restore_fails(self, snapshot, source_ref):
        raise exception.VolumeBackendAPIException(reason="rename failed")

    monkeypatch.setattr(type(loop.driver), "restore_managed_snapshot_name", restore_fails)
    vid = _available_volume(loop)
    open(os.path.join(loop.driver.directory, "legacyS"), "wb").truncate(GiB)
    sid = _creating_snapshot(loop, vid)
    with pytest.raises(exception.BlockmgrError, match="database went away"):
        loop.manage_existing_snapshot(CTX, sid, {"source-name": "legacyS"})
    kept = _files(loop) - {"volume-%s" % vid}
    assert kept == {"volume-%s@snapshot-%s" % (vid, sid)}
    _delete_failed_snapshot_manage(loop, sid)
    assert _files(loop) - {"volume-%s" % vid} == kept


def test_loopback_delete_of_a_failed_snapshot_manage_whose_restore_and_unmanage_failed(
        loop, commit_fails, monkeypatch):
    """Neither the name restore nor the unmanage fallback works while the manage is
    reverted: the file keeps the snapshot's name, the snapshot is ``error_managing``, and
    deleting it releases the file instead of deleting it; its data survives and the quota
    the API charged is given back exactly."""
    def fails(self, *args):
        raise exception.VolumeBackendAPIException(reason="rename failed")

    driver_cls = type(loop.driver)
    vid = _available_volume(loop)
    with open(os.path.join(loop.driver.directory, "legacyS"), "wb") as f:
        f.truncate(GiB)
        f.write(b"user data")
    sid = _creating_snapshot(loop, vid)
    before = _in_use(loop)
    with monkeypatch.context() as patch:
        patch.setattr(driver_cls, "restore_managed_snapshot_name", fails)
        patch.setattr(driver_cls, "unmanage_snapshot", fails)
        with pytest.raises(exception.BlockmgrError, match="database went away"):
            loop.manage_existing_snapshot(CTX, sid, {"source-name": "legacyS"})
    assert get(loop, models.Snapshot, sid).status == "error_managing"
    (held,) = _files(loop) - {"volume-%s" % vid}   # still under the snapshot's name
    assert "legacyS" != held
    assert _in_use(loop) == before
    deleted = []
    monkeypatch.setattr(driver_cls, "delete_snapshot",
                        lambda self, snapshot: deleted.append(snapshot.id))
    _delete_failed_snapshot_manage(loop, sid)
    assert deleted == []
    (left,) = _files(loop) - {"volume-%s" % vid}   # released (renamed), never deleted
    with open(os.path.join(loop.driver.directory, left), "rb") as f:
        assert f.read(9) == b"user data"
    assert _in_use(loop) == {"snapshots": before["snapshots"] - 1,
                             "gigabytes": before["gigabytes"] - 1}


# --- loopback: a failed manage gives the user's file its name back ---------------------------

def _files(manager) -> set[str]:
    return set(os.listdir(manager.driver.directory))


def test_loopback_failed_manage_gives_the_file_its_name_back(loop, commit_fails):
    path = os.path.join(loop.driver.directory, "legacyB")
    with open(path, "wb") as f:
        f.truncate(GiB)
        f.write(b"user data")
    vid = _managing_volume(loop)
    with pytest.raises(exception.BlockmgrError, match="database went away"):
        loop.manage_existing(CTX, vid, {"source-name": "legacyB"})
    assert _files(loop) == {"legacyB"}
    with open(path, "rb") as f:
        assert f.read(9) == b"user data"
    _delete_failed_import(loop, vid)
    assert _files(loop) == {"legacyB"}


def test_loopback_failed_snapshot_manage_gives_the_file_its_name_back(loop, commit_fails):
    vid = _available_volume(loop)
    open(os.path.join(loop.driver.directory, "legacyS"), "wb").truncate(GiB)
    sid = _creating_snapshot(loop, vid)
    with pytest.raises(exception.BlockmgrError, match="database went away"):
        loop.manage_existing_snapshot(CTX, sid, {"source-name": "legacyS"})
    assert _files(loop) == {"volume-%s" % vid, "legacyS"}
    _delete_failed_snapshot_manage(loop, sid)
    assert _files(loop) == {"volume-%s" % vid, "legacyS"}


def test_snapshot_manage_refused_by_the_driver_ends_error_and_touches_nothing(loop):
    """A reference the driver refuses (nothing bound) leaves the snapshot ``error``, as in
    Cinder: an ordinary delete is then safe."""
    vid = _available_volume(loop)
    sid = _creating_snapshot(loop, vid)
    with pytest.raises(exception.ManageExistingInvalidReference):
        loop.manage_existing_snapshot(CTX, sid, {"source-name": "no-such-file"})
    assert get(loop, models.Snapshot, sid).status == "error"
    assert _files(loop) == {"volume-%s" % vid}


def test_snapshot_manage_failing_before_the_driver_binds_ends_error(loop, monkeypatch):
    """The size question fails: the manage task never ran, nothing was renamed, the
    snapshot is ``error`` and the user's file keeps its name."""
    def get_size_fails(self, snapshot, ref):
        raise exception.VolumeBackendAPIException(reason="stat failed")

    monkeypatch.setattr(type(loop.driver), "manage_existing_snapshot_get_size",
                        get_size_fails)
    vid = _available_volume(loop)
    open(os.path.join(loop.driver.directory, "legacyS"), "wb").truncate(GiB)
    sid = _creating_snapshot(loop, vid)
    with pytest.raises(exception.VolumeBackendAPIException):
        loop.manage_existing_snapshot(CTX, sid, {"source-name": "legacyS"})
    assert get(loop, models.Snapshot, sid).status == "error"
    assert _files(loop) == {"volume-%s" % vid, "legacyS"}


# --- a manage request for a resource that is not being managed -------------------------------

def test_second_manage_of_an_available_volume_is_refused_before_the_driver(loop):
    open(os.path.join(loop.driver.directory, "legacyB"), "wb").truncate(GiB)
    vid = _managing_volume(loop)
    loop.manage_existing(CTX, vid, {"source-name": "legacyB"})
    assert _files(loop) == {"volume-%s" % vid}
    with pytest.raises(exception.InvalidVolume, match="not managing"):
        loop.manage_existing(CTX, vid, {"source-name": "legacyB"})
    assert _files(loop) == {"volume-%s" % vid}
    row = get(loop, models.Volume, vid)
    assert (row.status, row.size) == ("available", 1)


def test_second_manage_of_an_available_snapshot_is_refused_before_the_driver(loop):
    vid = _available_volume(loop)
    open(os.path.join(loop.driver.directory, "legacyS"), "wb").truncate(GiB)
    sid = _creating_snapshot(loop, vid)
    loop.manage_existing_snapshot(CTX, sid, {"source-name": "legacyS"})
    assert _files(loop) == {"volume-%s" % vid, "snapshot-%s" % sid}
    with pytest.raises(exception.InvalidSnapshot, match="not creating"):
        loop.manage_existing_snapshot(CTX, sid, {"source-name": "legacyS"})
    assert _files(loop) == {"volume-%s" % vid, "snapshot-%s" % sid}
    assert get(loop, models.Snapshot, sid).status == "available"


# --- cascade delete ---------------------------------------------------------------------------

@pytest.fixture
def env(sqlite_database, conf):
    return build_env(sqlite_database, conf)


def test_failed_cascade_leaves_every_snapshot_error_deleting_and_deletable(env):
    vid = make_volume(env, size=2)
    sids = [make_snapshot(env, vid, status="deleting") for _ in range(2)]
    set_status(env, models.Volume, vid, "deleting")
    env.driver.inject_failure("delete_volume",
                              exception.VolumeBackendAPIException(reason="array offline"),
                              times=1)
    with pytest.raises(exception.VolumeBackendAPIException):
        env.delete_volume(CTX, vid, cascade=True)
    assert get(env, models.Volume, vid).status == "error_deleting"
    for sid in sids:
        row = get(env, models.Snapshot, sid)
        assert row.status == "error_deleting"
        assert "array offline" in row.status_reason
    # each can be deleted again, and so can the volume, with its cascade
    set_status(env, models.Snapshot, sids[0], "deleting")
    assert env.delete_snapshot(CTX, sids[0]) is True
    set_status(env, models.Snapshot, sids[1], "deleting")
    set_status(env, models.Volume, vid, "deleting")
    assert env.delete_volume(CTX, vid, cascade=True) is True
    assert get(env, models.Snapshot, sids[1]).status == "deleted"


def test_manage_is_refused_over_per_volume_gigabytes_before_the_driver_binds(loop, conf):
    """A 1.2 GiB file is a 2 GiB volume: over a 1 GiB per-volume limit, the import is
    refused as a 2 GiB create would be, the file keeps its name, nothing is charged."""
    conf.set_override("per_volume_gigabytes", 1, group="quota")
    path = os.path.join(loop.driver.directory, "big")
    with open(path, "wb") as f:
        f.truncate(GiB + GiB // 5)
    vid = _managing_volume(loop)
    with pytest.raises(exception.VolumeSizeExceedsLimit):
        loop.manage_existing(CTX, vid, {"source-name": "big"})
    assert _files(loop) == {"big"}
    with loop.db.reader() as session:
        assert repository.get(session, models.Volume, vid).status == "error_managing"
    assert loop.quota.get_usages(PROJECT)["gigabytes"]["in_use"] == 0
