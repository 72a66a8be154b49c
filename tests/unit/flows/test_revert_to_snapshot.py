"""revert_to_snapshot flow through the VolumeManager, in-process on SQLite with the fake
driver: success, driver failure (volume error with the reason, snapshot kept available),
Unsupported (nothing changed: volume available), refusals, a repeat after a crash."""

from __future__ import annotations

import datetime as dt

import pytest

from blockmgr import exception
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import revert_to_snapshot
from blockmgr.interface.objects import VolumeView
from blockmgr.testing.fake_driver import FakeVolumeIO
from tests.unit.flows.test_delete_volume import env  # noqa: F401 (the fixture)
from tests.unit.flows.test_delete_volume import (CTX, assert_settled, error_events, get,
                                                 make_snapshot, make_volume, set_status)

BEFORE, AFTER = b"snapshot-data", b"written-later"


def _reverting(env, size=1):
    """A volume holding BEFORE in its snapshot and AFTER itself, both rows moved by the API
    (volume ``reverting``, snapshot ``restoring``)."""
    vid = make_volume(env, size=size)
    io = FakeVolumeIO(env.driver)
    io.write(VolumeView.from_model(get(env, models.Volume, vid)), 0, BEFORE)
    sid = make_snapshot(env, vid)
    volume = VolumeView.from_model(get(env, models.Volume, vid))
    io.write(volume, 0, AFTER)
    set_status(env, models.Snapshot, sid, "restoring")
    set_status(env, models.Volume, vid, "reverting")
    env.notifier.events.clear()
    return vid, sid, io


def _data(env, io, vid):
    return io.read(VolumeView.from_model(get(env, models.Volume, vid)), 0, len(BEFORE))


def test_revert_restores_the_snapshot_data_and_both_rows(env):
    vid, sid, io = _reverting(env)
    assert env.revert_to_snapshot(CTX, vid, sid) == vid
    assert _data(env, io, vid) == BEFORE
    assert get(env, models.Volume, vid).status == "available"
    assert get(env, models.Volume, vid).status_reason is None
    assert get(env, models.Snapshot, sid).status == "available"
    assert env.notifier.types() == ["volume.revert.start", "volume.revert.end"]
    assert env.notifier.events[-1][2]["snapshot_id"] == sid
    (call,) = env.driver.calls_to("revert_to_snapshot")
    assert [v.id for v in call.args[1:]] == [vid, sid]
    assert_settled(env)


def test_driver_failure_leaves_the_volume_error_with_the_reason(env):
    vid, sid, io = _reverting(env)
    env.driver.inject_failure("revert_to_snapshot",
                              exception.VolumeBackendAPIException(reason="merge failed"))
    with pytest.raises(exception.VolumeBackendAPIException, match="merge failed"):
        env.revert_to_snapshot(CTX, vid, sid)
    volume = get(env, models.Volume, vid)
    assert volume.status == "error"
    assert "VolumeBackendAPIException" in volume.status_reason
    assert "merge failed" in volume.status_reason
    assert get(env, models.Snapshot, sid).status == "available"
    assert "volume.revert.end" not in env.notifier.types()
    assert error_events(env) == [("ERROR", "volume.revert.error")]
    assert_settled(env)


def test_unsupported_driver_leaves_the_volume_available_and_says_why(env):
    vid, sid, io = _reverting(env)
    env.driver.inject_failure("revert_to_snapshot", exception.Unsupported(
        operation="revert_to_snapshot", what="driver Fake"))
    with pytest.raises(exception.Unsupported):
        env.revert_to_snapshot(CTX, vid, sid)
    volume = get(env, models.Volume, vid)
    assert volume.status == "available" and "Unsupported" in volume.status_reason
    assert get(env, models.Snapshot, sid).status == "available"
    assert _data(env, io, vid) == AFTER
    assert_settled(env)


def test_the_default_driver_method_raises_unsupported_without_touching_anything():
    from blockmgr.interface import VolumeDriver

    with pytest.raises(exception.Unsupported, match="revert_to_snapshot"):
        VolumeDriver.revert_to_snapshot(object(), None, None, None)


def test_a_volume_that_is_not_reverting_is_left_alone(env):
    vid = make_volume(env)
    sid = make_snapshot(env, vid)
    with pytest.raises(exception.InvalidVolume, match="not reverting"):
        env.revert_to_snapshot(CTX, vid, sid)
    assert get(env, models.Volume, vid).status == "available"
    assert get(env, models.Snapshot, sid).status == "available"
    assert env.driver.calls_to("revert_to_snapshot") == []
    assert_settled(env)


def test_a_snapshot_no_longer_the_latest_is_refused_and_nothing_changes(env):
    vid, sid, io = _reverting(env)
    newer = make_snapshot(env, vid)
    with env.db.writer() as session:
        repository.update(session, repository.get(session, models.Snapshot, sid),
                          created_at=dt.datetime(2020, 1, 1))
    with pytest.raises(exception.InvalidSnapshot, match="not the latest"):
        env.revert_to_snapshot(CTX, vid, sid)
    volume = get(env, models.Volume, vid)
    assert volume.status == "available" and "not the latest" in volume.status_reason
    assert get(env, models.Snapshot, sid).status == "available"
    assert get(env, models.Snapshot, newer).status == "available"
    assert _data(env, io, vid) == AFTER
    assert env.driver.calls_to("revert_to_snapshot") == []
    assert_settled(env)


def test_a_snapshot_settled_back_to_available_is_taken_again(env):
    """Recovery settles a ``restoring`` snapshot whose request had not started to
    ``available``; the request, run later by the ledger, still reverts."""
    vid, sid, io = _reverting(env)
    set_status(env, models.Snapshot, sid, "available")
    env.revert_to_snapshot(CTX, vid, sid)
    assert _data(env, io, vid) == BEFORE
    assert get(env, models.Snapshot, sid).status == "available"
    assert get(env, models.Volume, vid).status == "available"


def test_the_finish_writes_nothing_once_done(env):
    """A finishing task run again after a crash that followed its commit: the volume may
    already be reverting again for the next request; nothing is written."""
    vid, sid, io = _reverting(env)
    env.revert_to_snapshot(CTX, vid, sid)
    set_status(env, models.Volume, vid, "in-use")
    task = revert_to_snapshot.RevertOnFinishTask("revert.end")
    task.execute(env.runtime(), CTX.to_dict(), vid, sid, {"size": 1})
    assert get(env, models.Volume, vid).status == "in-use"


def test_reverting_twice_on_the_backend_is_the_same_as_once(env):
    vid, sid, io = _reverting(env)
    task = revert_to_snapshot.RevertOnBackendTask()
    task.execute(env.runtime(), CTX.to_dict(), vid, sid)
    task.execute(env.runtime(), CTX.to_dict(), vid, sid)
    assert _data(env, io, vid) == BEFORE


def test_the_manager_refuses_a_volume_of_another_backend(env):
    vid, sid, io = _reverting(env)
    set_status(env, models.Volume, vid, "reverting", host="other@fake#pool")
    with pytest.raises(exception.InvalidVolume, match="not on this backend"):
        env.revert_to_snapshot(CTX, vid, sid)
    assert env.driver.calls_to("revert_to_snapshot") == []


def test_the_revert_holds_the_volume_and_snapshot_locks(env):
    vid, sid, io = _reverting(env)
    held = []
    env.driver.inject_failure("revert_to_snapshot",
                              lambda call: held.append(env.locks.held_names()))
    env.revert_to_snapshot(CTX, vid, sid)
    assert {vid, vid + "-delete_volume", sid + "-delete_snapshot"} <= held[0]
