"""create_snapshot, delete_snapshot and unmanage (snapshot) flows through the VolumeManager
(docs/behaviours.md row 12), in-process on SQLite with the fake driver."""

from __future__ import annotations

import pytest

from blockmgr import exception
from blockmgr.db import models
from tests.unit.flows.test_delete_volume import env  # noqa: F401 (the fixture)
from tests.unit.flows.test_delete_volume import (CTX, assert_settled, error_events, get,
                                                 in_use, make_snapshot, make_volume,
                                                 set_status)


# --- create ---------------------------------------------------------------------------------

def test_create_snapshot_success(env):
    vid = make_volume(env, size=3)
    sid = make_snapshot(env, vid, status="creating", on_backend=False)
    assert env.create_snapshot(CTX, sid) == sid
    row = get(env, models.Snapshot, sid)
    assert (row.status, row.progress) == ("available", "100%")
    assert row.provider_location == "fake://fake/snapshot-%s" % sid   # model update applied
    assert env.driver.snapshots["snapshot-%s" % sid].volume_name == "volume-%s" % vid
    assert env.notifier.types() == ["snapshot.create.start", "snapshot.create.end"]
    assert in_use(env)["snapshots"] == 1 and in_use(env)["gigabytes"] == 6   # API's, kept
    assert_settled(env)


def test_create_snapshot_driver_error_leaves_error_and_keeps_quota(env):
    vid = make_volume(env, size=2)
    sid = make_snapshot(env, vid, status="creating", on_backend=False)
    env.driver.inject_failure("create_snapshot", exception.VolumeBackendAPIException(reason="x"))
    with pytest.raises(exception.VolumeBackendAPIException):
        env.create_snapshot(CTX, sid)
    row = get(env, models.Snapshot, sid)
    assert row.status == "error" and "VolumeBackendAPIException" in row.status_reason
    assert in_use(env)["snapshots"] == 1
    assert "snapshot.create.end" not in env.notifier.types()
    assert error_events(env) == [("ERROR", "snapshot.create.error")]
    assert_settled(env)


def test_create_snapshot_not_creating_is_left_alone(env):
    vid = make_volume(env)
    sid = make_snapshot(env, vid, status="available")
    with pytest.raises(exception.InvalidSnapshot):
        env.create_snapshot(CTX, sid)
    assert get(env, models.Snapshot, sid).status == "available"


def test_create_snapshot_holds_the_source_volume_lock(env):
    vid = make_volume(env)
    sid = make_snapshot(env, vid, status="creating", on_backend=False)
    held = []
    env.driver.inject_failure("create_snapshot",
                              lambda call: held.append(env.locks.held_names()))
    env.create_snapshot(CTX, sid)
    assert {sid, "%s-delete_volume" % vid} <= held[0]


def test_create_snapshot_of_unknown_snapshot(env):
    with pytest.raises(exception.SnapshotNotFound):
        env.create_snapshot(CTX, "00000000-0000-4000-8000-000000000000")


# --- delete ---------------------------------------------------------------------------------

def test_delete_snapshot_returns_snapshots_and_gigabytes(env):
    vid = make_volume(env, size=4)
    sid = make_snapshot(env, vid, status="deleting")
    assert in_use(env)["gigabytes"] == 8
    env.notifier.events.clear()
    assert env.delete_snapshot(CTX, sid) is True
    row = get(env, models.Snapshot, sid)
    assert (row.deleted, row.status) == (True, "deleted")
    assert "snapshot-%s" % sid not in env.driver.snapshots
    assert in_use(env)["snapshots"] == 0 and in_use(env)["gigabytes"] == 4
    assert env.notifier.types() == ["snapshot.delete.start", "snapshot.delete.end"]
    assert_settled(env)


def test_delete_snapshot_without_snapshot_gb_quota(env):
    env.conf.set_override("no_snapshot_gb_quota", True, group="quota")
    vid = make_volume(env, size=4)
    sid = make_snapshot(env, vid, status="deleting")
    assert in_use(env)["gigabytes"] == 4
    env.delete_snapshot(CTX, sid)
    assert in_use(env)["snapshots"] == 0 and in_use(env)["gigabytes"] == 4
    assert_settled(env)


def test_busy_snapshot_goes_back_to_available(env):
    vid = make_volume(env, size=1)
    sid = make_snapshot(env, vid, status="deleting")
    env.driver.inject_failure("delete_snapshot", exception.SnapshotIsBusy(snapshot_name="s"))
    before = in_use(env)
    assert env.delete_snapshot(CTX, sid) is False
    assert get(env, models.Snapshot, sid).status == "available"
    assert in_use(env) == before
    assert error_events(env) == [("ERROR", "snapshot.delete.error")]
    assert_settled(env)


def test_delete_snapshot_driver_error_leaves_error_deleting(env):
    vid = make_volume(env, size=1)
    sid = make_snapshot(env, vid, status="deleting")
    env.driver.inject_failure("delete_snapshot", exception.VolumeBackendAPIException(reason="x"))
    before = in_use(env)
    with pytest.raises(exception.VolumeBackendAPIException):
        env.delete_snapshot(CTX, sid)
    assert get(env, models.Snapshot, sid).status == "error_deleting"
    assert in_use(env) == before
    assert_settled(env)


def test_delete_snapshot_holds_the_delete_snapshot_lock(env):
    vid = make_volume(env)
    sid = make_snapshot(env, vid, status="deleting")
    held = []
    env.driver.inject_failure("delete_snapshot",
                              lambda call: held.append(env.locks.held_names()))
    env.delete_snapshot(CTX, sid)
    assert {sid, "%s-delete_snapshot" % sid} <= held[0]


def test_delete_snapshot_already_gone_is_quiet(env):
    vid = make_volume(env)
    sid = make_snapshot(env, vid, status="deleting")
    env.delete_snapshot(CTX, sid)
    env.notifier.events.clear()
    assert env.delete_snapshot(CTX, sid) is True and env.notifier.events == []


def test_delete_snapshot_in_wrong_status_is_left_alone(env):
    vid = make_volume(env)
    sid = make_snapshot(env, vid, status="available")
    with pytest.raises(exception.InvalidSnapshot):
        env.delete_snapshot(CTX, sid)
    assert get(env, models.Snapshot, sid).status == "available"
    assert env.driver.calls_to("delete_snapshot") == []


# --- unmanage -------------------------------------------------------------------------------

def test_unmanage_snapshot_keeps_backend_object_and_returns_quota(env):
    vid = make_volume(env, size=2)
    sid = make_snapshot(env, vid, status="unmanaging")
    env.notifier.events.clear()
    assert env.delete_snapshot(CTX, sid, unmanage_only=True) is True
    assert get(env, models.Snapshot, sid).status == "deleted"
    assert "snapshot-%s" % sid in env.driver.snapshots
    assert env.driver.calls_to("delete_snapshot") == []
    assert in_use(env)["snapshots"] == 0 and in_use(env)["gigabytes"] == 2
    assert env.notifier.types() == ["snapshot.delete.start", "snapshot.delete.end"]
    assert env.notifier.events[-1][2]["unmanaged"] is True
    assert_settled(env)


def test_unmanage_snapshot_failure_leaves_error_deleting(env):
    vid = make_volume(env, size=2)
    sid = make_snapshot(env, vid, status="unmanaging")
    env.driver.inject_failure("unmanage_snapshot",
                              exception.VolumeBackendAPIException(reason="x"))
    with pytest.raises(exception.VolumeBackendAPIException):
        env.delete_snapshot(CTX, sid, unmanage_only=True)
    assert get(env, models.Snapshot, sid).status == "error_deleting"
    assert in_use(env)["snapshots"] == 1
    assert_settled(env)


# --- delete of a snapshot whose manage failed -------------------------------------------------

def failed_manage_snapshot(env, size, status="error_managing_deleting"):
    """A snapshot whose manage failed (its object still carries the snapshot's name), with
    the quota the API charged, in ``status``."""
    vid = make_volume(env, size=size)
    sid = make_snapshot(env, vid, status="creating")
    set_status(env, models.Snapshot, sid, "error_managing")
    if status != "error_managing":
        set_status(env, models.Snapshot, sid, status)
    return sid


def test_delete_of_a_failed_manage_unmanages_and_returns_the_quota(env):
    sid = failed_manage_snapshot(env, size=2)
    assert in_use(env)["snapshots"] == 1 and in_use(env)["gigabytes"] == 4
    env.notifier.events.clear()
    assert env.delete_snapshot(CTX, sid) is True
    row = get(env, models.Snapshot, sid)
    assert (row.deleted, row.status) == (True, "deleted")
    assert "snapshot-%s" % sid in env.driver.snapshots          # the user's, kept
    assert env.driver.calls_to("delete_snapshot") == []
    assert len(env.driver.calls_to("unmanage_snapshot")) == 1
    assert in_use(env)["snapshots"] == 0 and in_use(env)["gigabytes"] == 2
    assert env.notifier.types() == ["snapshot.delete.start", "snapshot.delete.end"]
    assert env.notifier.events[-1][2]["unmanaged"] is True
    assert_settled(env)


@pytest.mark.parametrize("error", [exception.VolumeBackendAPIException(reason="x"),
                                   exception.SnapshotIsBusy(snapshot_name="s")])
def test_delete_of_a_failed_manage_that_fails_goes_back_to_error_managing(env, error):
    """Busy or not: ``available`` would make the user's object deletable as ours."""
    sid = failed_manage_snapshot(env, size=1)
    env.driver.inject_failure("unmanage_snapshot", error)
    before = in_use(env)
    if isinstance(error, exception.SnapshotIsBusy):
        assert env.delete_snapshot(CTX, sid) is False
    else:
        with pytest.raises(type(error)):
            env.delete_snapshot(CTX, sid)
    row = get(env, models.Snapshot, sid)
    assert row.status == "error_managing" and type(error).__name__ in row.status_reason
    assert in_use(env) == before
    assert env.driver.calls_to("delete_snapshot") == []
    assert_settled(env)


def test_plain_delete_flow_refuses_an_error_managing_snapshot(env):
    """The API must move it to error_managing_deleting first; a stray request is refused."""
    sid = failed_manage_snapshot(env, size=1, status="error_managing")
    with pytest.raises(exception.InvalidSnapshot):
        env.delete_snapshot(CTX, sid)
    assert get(env, models.Snapshot, sid).status == "error_managing"
    assert env.driver.calls_to("delete_snapshot") == []


# --- recovery -------------------------------------------------------------------------------

@pytest.mark.parametrize("status", ["deleting", "unmanaging"])
def test_init_host_finishes_orphaned_snapshot_deletes(env, status):
    vid = make_volume(env, size=2)
    sid = make_snapshot(env, vid, status=status)
    report = env.init_host()
    assert ("snapshot", sid, "handled") in report.orphans
    assert get(env, models.Snapshot, sid).status == "deleted"
    assert ("snapshot-%s" % sid in env.driver.snapshots) == (status == "unmanaging")
    assert_settled(env)


def test_init_host_finishes_an_orphaned_delete_of_a_failed_manage_by_unmanaging(env):
    sid = failed_manage_snapshot(env, size=2)
    report = env.init_host()
    assert ("snapshot", sid, "handled") in report.orphans
    assert get(env, models.Snapshot, sid).status == "deleted"
    assert "snapshot-%s" % sid in env.driver.snapshots
    assert env.driver.calls_to("delete_snapshot") == []
    assert in_use(env)["snapshots"] == 0 and in_use(env)["gigabytes"] == 2
    assert_settled(env)


def test_init_host_errors_orphaned_creating_snapshot(env):
    vid = make_volume(env)
    sid = make_snapshot(env, vid, status="creating", on_backend=False)
    env.init_host()
    assert get(env, models.Snapshot, sid).status == "error"
    assert_settled(env)
