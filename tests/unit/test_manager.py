"""VolumeManager endpoints driven in-process on SQLite (``docs/behaviours.md`` lists what each
test proves).

The fake driver injects failures; quota is the real engine; flows persist in the same SQLite
database as the resources.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import persistence
from blockmgr.notifications import MemoryNotifier
from blockmgr.quota import QuotaEngine
from blockmgr.testing.fake_driver import FakeDriver
from blockmgr.volume.manager import VolumeManager

GiB = 1024 ** 3
PROJECT = "p1"
CTX = bm_context.RequestContext(project_id=PROJECT, user_id="u1")


class Scheduler:
    """Records reschedule casts; ``fail`` makes the cast raise."""

    def __init__(self, driver, fail=None):
        self.casts, self.fail, self.driver = [], fail, driver

    def __call__(self, context, volume_id, request_spec, filter_properties):
        self.casts.append((volume_id, request_spec, filter_properties,
                           len(self.driver.calls_to("delete_volume"))))
        if self.fail:
            raise self.fail


@pytest.fixture
def env(sqlite_database, conf):
    conf.set_override("host", "node1")
    conf.set_override("connection", sqlite_database.url, group="database")
    driver = FakeDriver(None, "fake", host="node1@fake")
    quota = QuotaEngine(sqlite_database, conf)
    notifier = MemoryNotifier()
    scheduler = Scheduler(driver)
    manager = VolumeManager(conf, "fake", db=sqlite_database, driver=driver, quota=quota,
                            notifier=notifier, reschedule=scheduler)
    manager.init_host()
    return manager


def _volume(manager, status="creating", size=1, **values):
    """A row as the API leaves it, with the API's committed quota."""
    with manager.db.writer() as session:
        row = repository.create(session, models.Volume, status=status, size=size,
                                host=manager.host + "#pool", project_id=PROJECT, **values)
        manager.quota.consume(session, PROJECT, volumes=1, gigabytes=size)
        return row.id


def _get(manager, model, resource_id):
    with manager.db.reader() as session:
        row = repository.get(session, model, resource_id, read_deleted=True)
        session.expunge(row)
        return row


def _assert_settled(manager):
    assert manager.quota.check() == []
    with manager.db.reader() as session:
        live = session.scalars(sa.select(models.Reservation)
                               .where(models.Reservation.deleted.is_(False))).all()
    assert live == []
    assert manager.runner.backend.unfinished_flow_uuids() == set()


# --- create (behaviour 1-3, 5) -------------------------------------------------------------------

def test_create_raw_success(env):
    vid = _volume(env, size=3)
    assert env.create_volume(CTX, vid) == vid
    row = _get(env, models.Volume, vid)
    assert row.status == "available" and row.launched_at is not None
    assert "volume-%s" % vid in env.driver.volumes
    assert env.notifier.types() == ["volume.create.start", "volume.create.end"]
    assert env.capacity.get("pool") == 3
    assert env.quota.get_usages(PROJECT)["gigabytes"]["in_use"] == 3
    _assert_settled(env)


def test_create_reschedulable_error_with_retry_is_rescheduled(env):
    vid = _volume(env, size=2)
    env.driver.inject_failure("create_volume",
                              exception.VolumeBackendAPIException(reason="boom"), when="after")
    retry = {"num_attempts": 1, "backends": [env.host]}
    with pytest.raises(exception.VolumeBackendAPIException):
        env.create_volume(CTX, vid, request_spec={"volume_properties": {}},
                          filter_properties={"retry": retry})
    row = _get(env, models.Volume, vid)
    assert row.status == "creating" and row.host is None and row.scheduled_at is not None
    [(cast_id, spec, props, deletes_before)] = env.reschedule.casts
    assert cast_id == vid and spec["volume_id"] == vid and "boom" in props["retry"]["exc"]
    assert deletes_before == 0 and len(env.driver.calls_to("delete_volume")) == 1
    assert "volume-%s" % vid not in env.driver.volumes
    assert env.capacity.get("pool") == 0
    assert "volume.create.end" not in env.notifier.types()
    # A rescheduled create has not failed: no error event (the final attempt sends one).
    assert "volume.create.error" not in env.notifier.types()


def test_create_failed_reschedule_cast_errors_the_volume(env):
    vid = _volume(env)
    env.reschedule.fail = exception.BackendUnavailable(backend="scheduler", reason="down")
    env.driver.inject_failure("create_volume", exception.VolumeBackendAPIException(reason="x"))
    with pytest.raises(exception.VolumeBackendAPIException):
        env.create_volume(CTX, vid, request_spec={}, filter_properties={"retry": {}})
    row = _get(env, models.Volume, vid)
    assert row.status == "error" and row.host == env.host + "#pool"
    assert env.notifier.types().count("volume.create.error") == 1


@pytest.mark.parametrize("error,filter_properties,allow", [
    (exception.MetadataUpdateFailure(resource_id="v", reason="x"), {"retry": {}}, True),
    (exception.VolumeBackendAPIException(reason="x"), {}, True),
    (exception.VolumeBackendAPIException(reason="x"), {"retry": {}}, False),
])
def test_create_not_rescheduled_errors_out(env, error, filter_properties, allow):
    vid = _volume(env, size=4)
    env.driver.inject_failure("create_volume", error)
    with pytest.raises(type(error)):
        env.create_volume(CTX, vid, request_spec={}, filter_properties=filter_properties,
                          allow_reschedule=allow)
    assert _get(env, models.Volume, vid).status == "error"
    assert env.reschedule.casts == []
    assert env.notifier.types().count("volume.create.error") == 1
    assert env.capacity.get("pool") == 4
    _assert_settled(env)


def test_create_driver_not_initialized(env):
    err = exception.DriverNotInitialized(driver="fake", reason="setup failed")
    first, second = _volume(env), _volume(env)
    env.driver.inject_failure("create_volume", err)
    with pytest.raises(exception.DriverNotInitialized):
        env.create_volume(CTX, first)
    assert _get(env, models.Volume, first).status == "error"
    with pytest.raises(exception.DriverNotInitialized):
        env.create_volume(CTX, second, request_spec={}, filter_properties={"retry": {}})
    assert _get(env, models.Volume, second).status == "creating"
    assert len(env.reschedule.casts) == 1


def test_create_from_snapshot_inherits_bootable(env):
    src = _volume(env, size=1, bootable=True)
    env.create_volume(CTX, src)
    with env.db.writer() as session:
        snap = repository.create(session, models.Snapshot, volume_id=src, status="available",
                                 volume_size=1, project_id=PROJECT)
        snap_id = snap.id
    env.driver.create_snapshot(objects_snapshot(snap_id, src))
    vid = _volume(env, size=2)
    env.create_volume(CTX, vid, request_spec={"snapshot_id": snap_id})
    row = _get(env, models.Volume, vid)
    assert row.status == "available" and row.bootable is True
    assert len(env.driver.calls_to("create_volume_from_snapshot")) == 1


def objects_snapshot(snapshot_id, volume_id):
    from blockmgr.interface.objects import SnapshotView
    return SnapshotView(id=snapshot_id, volume_id=volume_id, volume_size=1)


def test_create_rejects_volume_of_another_backend(env):
    vid = _volume(env)
    with env.db.writer() as session:
        repository.update(session, repository.get(session, models.Volume, vid),
                          host="other@fake#pool")
    with pytest.raises(exception.InvalidVolume):
        env.create_volume(CTX, vid)
    assert env.driver.calls_to("create_volume") == []


# --- manage existing volume (behaviour 6-7) ------------------------------------------------------

def _managing(env):
    return _volume(env, status="managing", size=0)


def test_manage_existing_success(env):
    ref = env.driver.seed_foreign_volume(int(1.2 * GiB), name="lv-import")
    vid = _managing(env)
    env.manage_existing(CTX, vid, ref)
    row = _get(env, models.Volume, vid)
    assert (row.status, row.size) == ("available", 2) and row.launched_at is not None
    usages = env.quota.get_usages(PROJECT)
    assert usages["gigabytes"]["in_use"] == 2 and usages["volumes"]["in_use"] == 1
    assert env.notifier.types() == ["volume.manage_existing.start",
                                    "volume.manage_existing.end"]
    assert "volume-%s" % vid in env.driver.volumes and "lv-import" not in env.driver.volumes
    assert env.capacity.get("pool") == 2
    _assert_settled(env)


@pytest.mark.parametrize("method", ["manage_existing_get_size", "manage_existing"])
def test_manage_existing_failure_rolls_back(env, method):
    ref = env.driver.seed_foreign_volume(GiB, name="lv-import")
    vid = _managing(env)
    env.driver.inject_failure(method, exception.ManageExistingInvalidReference(
        existing_ref=ref, reason="nope"))
    with pytest.raises(exception.ManageExistingInvalidReference):
        env.manage_existing(CTX, vid, ref)
    assert _get(env, models.Volume, vid).status == "error_managing"
    gigabytes = env.quota.get_usages(PROJECT)["gigabytes"]
    assert (gigabytes["in_use"], gigabytes["reserved"]) == (0, 0)
    assert "lv-import" in env.driver.volumes           # backend object untouched
    types = env.notifier.types()
    assert "volume.manage_existing.end" not in types and "volume.manage_existing.error" in types
    _assert_settled(env)


def test_manage_existing_over_quota(env):
    env.quota.set_limit(PROJECT, "gigabytes", 1)
    ref = env.driver.seed_foreign_volume(3 * GiB, name="big")
    vid = _managing(env)
    with pytest.raises(exception.OverQuota):
        env.manage_existing(CTX, vid, ref)
    assert _get(env, models.Volume, vid).status == "error_managing"
    assert "big" in env.driver.volumes
    _assert_settled(env)


def test_manage_existing_bad_reference_is_refused_before_any_flow(env):
    vid = _managing(env)
    with pytest.raises(exception.ManageExistingInvalidReference):
        env.manage_existing(CTX, vid, {"wrong": "key"})
    assert _get(env, models.Volume, vid).status == "managing"


# --- manage existing snapshot (behaviour 8) ------------------------------------------------------

def _snapshot_row(env, status="creating"):
    vid = _volume(env, size=5)
    env.create_volume(CTX, vid)
    with env.db.writer() as session:
        snap = repository.create(session, models.Snapshot, volume_id=vid, status=status,
                                 volume_size=5, project_id=PROJECT)
        env.quota.consume(session, PROJECT, snapshots=1, gigabytes=5)
        return vid, snap.id


def test_manage_existing_snapshot_success(env):
    vid, sid = _snapshot_row(env)
    ref = env.driver.seed_foreign_snapshot("volume-%s" % vid, 2 * GiB, name="snap-import")
    env.manage_existing_snapshot(CTX, sid, ref)
    row = _get(env, models.Snapshot, sid)
    assert (row.status, row.volume_size) == ("available", 2)
    usages = env.quota.get_usages(PROJECT)
    assert usages["gigabytes"]["in_use"] == 5 + 2 and usages["snapshots"]["in_use"] == 1
    types = env.notifier.types()
    assert types[-2:] == ["snapshot.manage_existing_snapshot.start",
                          "snapshot.manage_existing_snapshot.end"]
    _assert_settled(env)


def test_manage_existing_snapshot_failure(env):
    vid, sid = _snapshot_row(env)
    ref = env.driver.seed_foreign_snapshot("volume-%s" % vid, 2 * GiB, name="snap-import")
    env.driver.inject_failure("manage_existing_snapshot",
                              exception.VolumeBackendAPIException(reason="x"))
    with pytest.raises(exception.VolumeBackendAPIException):
        env.manage_existing_snapshot(CTX, sid, ref)
    # The driver may have touched the object: error_managing, whose delete only unmanages.
    assert _get(env, models.Snapshot, sid).status == "error_managing"
    assert env.quota.get_usages(PROJECT)["gigabytes"]["reserved"] == 0
    assert "snapshot.manage_existing_snapshot.error" in env.notifier.types()
    _assert_settled(env)


# --- recovery (behaviour 16, the in-process part; crash tests kill real processes) ---------------

def test_init_host_moves_orphaned_transitional_rows(env):
    creating, managing = _volume(env), _managing(env)
    report = env.init_host()
    assert _get(env, models.Volume, creating).status == "error"
    assert _get(env, models.Volume, managing).status == "error_managing"
    assert {r[1] for r in report.orphans} == {creating, managing}


def test_init_host_releases_orphaned_reservations(env):
    env.quota.reserve(PROJECT, owner="0f0e0d0c-0000-4000-8000-000000000000", gigabytes=3)
    env.init_host()
    assert env.quota.get_usages(PROJECT)["gigabytes"]["reserved"] == 0


def test_successful_flows_are_pruned_at_finish(env):
    vid = _volume(env)
    env.create_volume(CTX, vid)
    with env.runner.backend.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count())
                            .select_from(persistence.TABLES.flowdetails)).scalar() == 0
