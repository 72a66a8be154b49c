"""delete_volume / unmanage flows through the VolumeManager (docs/behaviours.md rows
9-11, 16), in-process on SQLite with the fake driver and the real quota engine.

The ``env`` fixture and helpers here are shared by the snapshot and extend flow tests.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import delete_volume
from blockmgr.interface.objects import SnapshotView
from blockmgr.notifications import MemoryNotifier
from blockmgr.quota import QuotaEngine
from blockmgr.testing.fake_driver import FakeDriver
from blockmgr.volume.manager import VolumeManager

GiB = 1024 ** 3
PROJECT = "p1"
CTX = bm_context.RequestContext(project_id=PROJECT, user_id="u1")


def build_env(db, conf) -> VolumeManager:
    conf.set_override("host", "node1")
    conf.set_override("connection", db.url, group="database")
    driver = FakeDriver(None, "fake", host="node1@fake")
    manager = VolumeManager(conf, "fake", db=db, driver=driver, quota=QuotaEngine(db, conf),
                            notifier=MemoryNotifier())
    manager.init_host()
    return manager


@pytest.fixture
def env(sqlite_database, conf):
    return build_env(sqlite_database, conf)


def make_volume(env, size=2, status="available", on_backend=True, **values):
    """A volume row with the API's committed quota, and (``on_backend``) its backend object,
    created through the create flow and then moved to ``status``."""
    with env.db.writer() as session:
        row = repository.create(session, models.Volume, size=size,
                                status="creating" if on_backend else status,
                                host=env.host + "#pool", project_id=PROJECT, **values)
        if row.use_quota:
            env.quota.consume(session, PROJECT, volumes=1, gigabytes=size)
        vid = row.id
    if on_backend:
        env.create_volume(CTX, vid)
        if status != "available":
            set_status(env, models.Volume, vid, status)
    env.notifier.events.clear()
    return vid


def make_snapshot(env, volume_id, status="available", on_backend=True, size=None):
    """A snapshot row with the API's committed quota (``snapshots +1, gigabytes +size``)."""
    with env.db.writer() as session:
        vol = repository.get(session, models.Volume, volume_id)
        size = vol.size if size is None else size
        row = repository.create(session, models.Snapshot, volume_id=volume_id,
                                status="creating", volume_size=size, project_id=PROJECT)
        deltas = {"snapshots": 1}
        if not env.conf.quota.no_snapshot_gb_quota:
            deltas["gigabytes"] = size
        env.quota.consume(session, PROJECT, **deltas)
        sid = row.id
    if on_backend:
        env.driver.create_snapshot(SnapshotView(id=sid, volume_id=volume_id,
                                                volume_size=size))
    for step in {"creating": [], "available": ["available"]}.get(status,
                                                                  ["available", status]):
        set_status(env, models.Snapshot, sid, step)
    return sid


def set_status(env, model, resource_id, status, **values):
    with env.db.writer() as session:
        repository.update(session, repository.get(session, model, resource_id),
                          status=status, **values)


def get(env, model, resource_id):
    with env.db.reader() as session:
        row = repository.get(session, model, resource_id, read_deleted=True)
        session.expunge(row)
        return row


def in_use(env):
    return {r: u["in_use"] for r, u in env.quota.get_usages(PROJECT).items()}


def assert_settled(env):
    """Quota equals the recomputed truth, nothing reserved, no flow left unfinished."""
    assert env.quota.check() == []
    with env.db.reader() as session:
        live = session.scalars(sa.select(models.Reservation)
                               .where(models.Reservation.deleted.is_(False))).all()
    assert live == []
    assert env.runner.backend.unfinished_flow_uuids() == set()


def error_events(env):
    return [(p, t) for p, t, _payload in env.notifier.events if t.endswith(".error")]


# --- delete (behaviour 9) ------------------------------------------------------------------------

def test_delete_soft_deletes_and_returns_quota_in_one_step(env):
    vid = make_volume(env, size=3, status="deleting")
    assert env.capacity.get("pool") == 3
    assert env.delete_volume(CTX, vid) is True
    row = get(env, models.Volume, vid)
    assert (row.deleted, row.status) == (True, "deleted") and row.deleted_at is not None
    assert "volume-%s" % vid not in env.driver.volumes
    assert in_use(env)["volumes"] == 0 and in_use(env)["gigabytes"] == 0
    assert env.notifier.types() == ["volume.delete.start", "volume.delete.end"]
    assert env.capacity.get("pool") == 0
    with env.db.reader() as session:   # the negative reservation names the flow and is done
        [res_owner] = set(session.scalars(sa.select(models.Reservation.owner)
                                          .where(models.Reservation.delta < 0)))
    assert res_owner is not None
    assert_settled(env)


def test_delete_without_quota_sends_nothing_and_counts_nothing(env):
    vid = make_volume(env, size=2, status="deleting", use_quota=False)
    before = in_use(env)
    assert env.delete_volume(CTX, vid) is True
    assert get(env, models.Volume, vid).status == "deleted"
    assert in_use(env) == before and env.notifier.events == []
    assert_settled(env)


def test_delete_of_a_volume_already_gone_is_quiet(env):
    vid = make_volume(env, status="deleting")
    env.delete_volume(CTX, vid)
    env.notifier.events.clear()
    assert env.delete_volume(CTX, vid) is True
    assert env.notifier.events == []
    assert_settled(env)


def test_delete_is_idempotent_on_the_backend(env):
    vid = make_volume(env, status="deleting", on_backend=False)
    assert env.delete_volume(CTX, vid) is True
    assert in_use(env)["volumes"] == 0
    assert_settled(env)


# --- delete failures (behaviour 10) --------------------------------------------------------------

def test_busy_volume_goes_back_to_available_with_quota_unchanged(env):
    vid = make_volume(env, size=2)
    make_snapshot(env, vid)                                  # the fake refuses: dependents
    set_status(env, models.Volume, vid, "deleting")
    before = in_use(env)
    assert env.delete_volume(CTX, vid) is False
    row = get(env, models.Volume, vid)
    assert (row.status, row.deleted) == ("available", False)
    assert "VolumeIsBusy" in row.status_reason
    assert in_use(env) == before
    assert "volume.delete.end" not in env.notifier.types()
    assert error_events(env) == [("ERROR", "volume.delete.error")]
    assert_settled(env)


def test_driver_error_leaves_error_deleting_and_quota_unchanged(env):
    vid = make_volume(env, size=2, status="deleting")
    env.driver.inject_failure("delete_volume", exception.VolumeBackendAPIException(reason="io"))
    before = in_use(env)
    with pytest.raises(exception.VolumeBackendAPIException):
        env.delete_volume(CTX, vid)
    assert get(env, models.Volume, vid).status == "error_deleting"
    assert in_use(env) == before and env.capacity.get("pool") == 2
    assert error_events(env) == [("ERROR", "volume.delete.error")]
    assert_settled(env)
    env.driver.clear_failures()                              # the user retries
    set_status(env, models.Volume, vid, "deleting")
    assert env.delete_volume(CTX, vid) is True
    assert in_use(env)["gigabytes"] == 0
    assert_settled(env)


def test_non_driver_error_in_destroy_rolls_back_row_and_quota_together(env, monkeypatch):
    """The negative reservation and the soft delete are one transaction: a failure after
    the reservation was committed in it leaves neither (no drift, no live reservation)."""
    vid = make_volume(env, size=4, status="deleting")
    before = in_use(env)

    def broken(session, row):
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(delete_volume.repository, "soft_delete", broken)
    with pytest.raises(exception.VolumeBackendAPIException, match="database hiccup"):
        env.delete_volume(CTX, vid)
    row = get(env, models.Volume, vid)
    assert (row.status, row.deleted) == ("error_deleting", False)
    assert in_use(env) == before
    assert_settled(env)


def test_attached_volume_is_refused_with_a_defined_status(env):
    vid = make_volume(env, status="deleting", attach_status="attached")
    with pytest.raises(exception.VolumeAttached):
        env.delete_volume(CTX, vid)
    assert get(env, models.Volume, vid).status == "error_deleting"
    assert env.driver.calls_to("delete_volume") == []
    assert_settled(env)


def test_volume_not_in_a_deleting_status_is_left_alone(env):
    vid = make_volume(env, status="available")
    with pytest.raises(exception.InvalidVolume):
        env.delete_volume(CTX, vid)
    assert get(env, models.Volume, vid).status == "available"
    assert env.driver.calls_to("delete_volume") == []


def test_volume_of_another_backend_is_refused_before_any_flow(env):
    vid = make_volume(env, status="deleting")
    set_status(env, models.Volume, vid, "deleting", host="other@fake#pool")
    with pytest.raises(exception.InvalidVolume):
        env.delete_volume(CTX, vid)
    assert get(env, models.Volume, vid).status == "deleting"


def test_delete_holds_the_delete_volume_lock(env):
    vid = make_volume(env, status="deleting")
    held = []
    env.driver.inject_failure("delete_volume",
                              lambda call: held.append(env.locks.held_names()))
    env.delete_volume(CTX, vid)
    assert {vid, "%s-delete_volume" % vid} <= held[0]


# --- cascade --------------------------------------------------------------------------------

def test_cascade_deletes_snapshots_and_returns_all_quota_at_once(env):
    vid = make_volume(env, size=2)
    sids = [make_snapshot(env, vid, status="deleting") for _ in range(2)]
    set_status(env, models.Volume, vid, "deleting")
    assert in_use(env) == {"volumes": 1, "snapshots": 2, "gigabytes": 6, "groups": 0}
    assert env.delete_volume(CTX, vid, cascade=True) is True
    assert all(get(env, models.Snapshot, s).status == "deleted" for s in sids)
    assert env.driver.snapshots == {} and env.driver.volumes == {}
    assert in_use(env) == {"volumes": 0, "snapshots": 0, "gigabytes": 0, "groups": 0}
    assert_settled(env)


def test_cascade_needs_every_snapshot_deleting(env):
    vid = make_volume(env, size=2)
    taken = make_snapshot(env, vid, status="deleting")
    keep = make_snapshot(env, vid, status="available")
    set_status(env, models.Volume, vid, "deleting")
    with pytest.raises(exception.InvalidSnapshot, match=keep):
        env.delete_volume(CTX, vid, cascade=True)
    assert get(env, models.Volume, vid).status == "error_deleting"
    assert env.driver.calls_to("delete_snapshot") == []
    # the snapshot the API moved for the refused cascade does not stay deleting
    row = get(env, models.Snapshot, taken)
    assert row.status == "error_deleting" and keep in row.status_reason
    assert get(env, models.Snapshot, keep).status == "available"
    assert_settled(env)


def test_unmanage_cannot_cascade(env):
    vid = make_volume(env, status="unmanaging")
    with pytest.raises(exception.InvalidVolume):
        env.delete_volume(CTX, vid, unmanage_only=True, cascade=True)
    assert get(env, models.Volume, vid).status == "error_unmanaging"


# --- unmanage (behaviour 11) ---------------------------------------------------------------------

def test_unmanage_keeps_the_backend_object_and_returns_quota(env):
    vid = make_volume(env, size=3, status="unmanaging")
    assert env.delete_volume(CTX, vid, unmanage_only=True) is True
    assert get(env, models.Volume, vid).status == "deleted"
    assert "volume-%s" % vid in env.driver.volumes
    assert env.driver.calls_to("delete_volume") == []
    assert len(env.driver.calls_to("unmanage")) == 1
    assert in_use(env)["volumes"] == 0 and in_use(env)["gigabytes"] == 0
    assert env.notifier.types() == ["volume.unmanage.start", "volume.unmanage.end"]
    assert env.capacity.get("pool") == 0
    assert_settled(env)


def test_unmanage_failure_leaves_error_unmanaging(env):
    vid = make_volume(env, size=3, status="unmanaging")
    env.driver.inject_failure("unmanage", exception.VolumeBackendAPIException(reason="no"))
    with pytest.raises(exception.VolumeBackendAPIException):
        env.delete_volume(CTX, vid, unmanage_only=True)
    assert get(env, models.Volume, vid).status == "error_unmanaging"
    assert in_use(env)["gigabytes"] == 3
    assert error_events(env) == [("ERROR", "volume.unmanage.error")]
    assert_settled(env)


# --- a failed import (error_managing) ------------------------------------------------------

def test_deleting_a_failed_import_returns_only_the_volume_count(env):
    ref = env.driver.seed_foreign_volume(2 * GiB, name="lv-import")
    vid = make_volume(env, size=0, status="managing", on_backend=False)
    env.driver.inject_failure("manage_existing", exception.VolumeBackendAPIException(reason="x"))
    with pytest.raises(exception.VolumeBackendAPIException):
        env.manage_existing(CTX, vid, ref)
    assert in_use(env)["volumes"] == 1 and in_use(env)["gigabytes"] == 0
    set_status(env, models.Volume, vid, "error_managing_deleting")
    assert env.delete_volume(CTX, vid) is True
    assert get(env, models.Volume, vid).status == "deleted"
    assert in_use(env)["volumes"] == 0 and in_use(env)["gigabytes"] == 0
    assert "lv-import" in env.driver.volumes                  # never the user's data
    assert_settled(env)


def test_failed_delete_of_a_failed_import_goes_back_to_error_managing(env):
    vid = make_volume(env, size=0, status="managing", on_backend=False)
    set_status(env, models.Volume, vid, "error_managing")
    set_status(env, models.Volume, vid, "error_managing_deleting")
    env.driver.inject_failure("unmanage", exception.VolumeBackendAPIException(reason="x"))
    with pytest.raises(exception.VolumeBackendAPIException):
        env.delete_volume(CTX, vid)
    assert get(env, models.Volume, vid).status == "error_managing"
    assert in_use(env)["volumes"] == 1
    assert_settled(env)


# --- recovery (behaviour 16): an orphaned delete is finished, not errored ------------------------

@pytest.mark.parametrize("status,unmanaged", [("deleting", False), ("unmanaging", True),
                                              ("error_managing_deleting", False)])
def test_init_host_finishes_orphaned_deletes(env, status, unmanaged):
    vid = make_volume(env, size=2)
    if status == "error_managing_deleting":
        with env.db.writer() as session:    # a failed import holds only volumes +1
            row = repository.create(session, models.Volume, status="managing", size=0,
                                    host=env.host + "#pool", project_id=PROJECT)
            env.quota.consume(session, PROJECT, volumes=1)
            vid = row.id
        set_status(env, models.Volume, vid, "error_managing")
    set_status(env, models.Volume, vid, status)
    report = env.init_host()
    assert ("volume", vid, "handled") in report.orphans
    assert get(env, models.Volume, vid).status == "deleted"
    assert ("volume-%s" % vid in env.driver.volumes) == unmanaged
    assert_settled(env)


def test_init_host_orphaned_delete_that_fails_ends_error_deleting(env):
    vid = make_volume(env, size=2, status="deleting")
    env.driver.inject_failure("delete_volume", exception.VolumeBackendAPIException(reason="x"))
    env.init_host()
    assert get(env, models.Volume, vid).status == "error_deleting"
    assert_settled(env)


def test_init_host_orphaned_cascade_delete(env):
    vid = make_volume(env, size=1)
    sid = make_snapshot(env, vid, status="deleting")
    set_status(env, models.Volume, vid, "deleting")
    env.init_host()
    assert get(env, models.Volume, vid).status == "deleted"
    assert get(env, models.Snapshot, sid).status == "deleted"
    assert_settled(env)


# --- the same transaction on every database ------------------------------------------------

def test_delete_and_extend_keep_quota_exact_on_every_database(database, conf):
    """The joined quota transactions (reserve + commit inside the row's transaction, and the
    extend swap) on SQLite, MariaDB and PostgreSQL."""
    env = build_env(database, conf)
    vid = make_volume(env, size=2)
    sid = make_snapshot(env, vid, status="deleting")
    env.delete_snapshot(CTX, sid)
    set_status(env, models.Volume, vid, "extending", previous_status="available")
    env.extend_volume(CTX, vid, 3, reservations=env.quota.reserve(PROJECT, gigabytes=1))
    assert in_use(env)["gigabytes"] == 3
    set_status(env, models.Volume, vid, "deleting")
    assert env.delete_volume(CTX, vid) is True
    assert in_use(env) == {"volumes": 0, "snapshots": 0, "gigabytes": 0, "groups": 0}
    assert_settled(env)
