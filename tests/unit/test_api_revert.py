"""Client library: revert to snapshot. Accepted: volume ``reverting``, snapshot
``restoring`` and the request for the volume's backend in one transaction. Refused (Cinder's
rules): no snapshot, not the latest, another size (400); volume or snapshot not available
(409); with NOTHING written."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from blockmgr import exception
from blockmgr.db import models
from blockmgr.db import repository
from tests.unit.test_api import A, B, REQUEST_IDS, _requests, available_snapshot, \
    available_volume, env, state_of  # noqa: F401 (env is a fixture)


def _age(env, snapshot_id, minutes):
    """Make the snapshot ``minutes`` old, so which one is the latest does not depend on
    the clock's resolution."""
    with env.db.writer() as session:
        repository.update(session, repository.get(session, models.Snapshot, snapshot_id),
                          created_at=dt.datetime(2026, 1, 1) - dt.timedelta(minutes=minutes))


def _set(env, model, resource_id, **values):
    with env.db.writer() as session:
        repository.update(session, repository.get(session, model, resource_id), **values)


def _status(env, model, resource_id):
    with env.db.reader() as session:
        return repository.get(session, model, resource_id).status


def test_revert_marks_both_rows_and_records_the_request_for_the_volume_backend(env):
    vid = available_volume(env, 10)
    old = available_snapshot(env, vid)
    latest = available_snapshot(env, vid)
    _age(env, old, 10)
    _age(env, latest, 1)
    row = env.volumes.revert_to_snapshot(A, vid, latest)
    assert row["status"] == "reverting"
    assert _status(env, models.Snapshot, latest) == "restoring"
    assert _status(env, models.Snapshot, old) == "available"
    request = _requests(env.db)[-1]
    assert (request.kind, request.resource_id, request.action, request.state) == (
        "volume", vid, "revert_to_snapshot", "pending")
    assert json.loads(request.arguments) == {"volume_id": vid, "snapshot_id": latest}
    method, host, kwargs = env.vol.sent[-1]
    assert (method, host, kwargs) == ("revert_to_snapshot", "n1@lvm#pool",
                                      {"volume_id": vid, "snapshot_id": latest})
    assert REQUEST_IDS[-1] == request.id


def test_a_failed_cast_loses_nothing_the_revert_stays_pending(env):
    vid = available_volume(env, 10)
    sid = available_snapshot(env, vid)
    env.vol.fail = RuntimeError("no broker")
    assert env.volumes.revert_to_snapshot(A, vid, sid)["status"] == "reverting"
    assert _requests(env.db)[-1].state == "pending"


def _refused(env, error, vid, sid, ctx=A, match=None):
    before = state_of(env.db)
    requests = len(_requests(env.db))
    with pytest.raises(error, match=match) as info:
        env.volumes.revert_to_snapshot(ctx, vid, sid)
    assert state_of(env.db) == before
    assert len(_requests(env.db)) == requests
    return info.value


def test_a_volume_without_snapshots_is_refused_400(env):
    vid = available_volume(env, 10)
    exc = _refused(env, exception.InvalidSnapshot, vid, "0" * 36, match="no snapshot")
    assert exc.code == 400


def test_only_the_latest_snapshot_can_be_reverted_to_400(env):
    vid = available_volume(env, 10)
    old = available_snapshot(env, vid)
    latest = available_snapshot(env, vid)
    _age(env, old, 10)
    _age(env, latest, 1)
    exc = _refused(env, exception.InvalidSnapshot, vid, old, match="not the latest")
    assert exc.code == 400 and latest in exc.msg
    # A snapshot of another volume, or an unknown id, is not the latest one either.
    other = available_volume(env, 10)
    other_snap = available_snapshot(env, other)
    _refused(env, exception.InvalidSnapshot, vid, other_snap, match="not the latest")
    _refused(env, exception.InvalidSnapshot, vid, "no-such-snapshot", match="not the latest")


def test_the_latest_snapshot_in_error_still_blocks_older_ones(env):
    """Cinder's latest snapshot is the newest of any status: an older one cannot be used
    to skip a failed newer one."""
    vid = available_volume(env, 10)
    old = available_snapshot(env, vid)
    latest = available_snapshot(env, vid)
    _age(env, old, 10)
    _age(env, latest, 1)
    _set(env, models.Snapshot, latest, status="error")
    _refused(env, exception.InvalidSnapshot, vid, old, match="not the latest")
    exc = _refused(env, exception.Conflict, vid, latest, match="error")
    assert exc.code == 409


def test_a_volume_extended_since_the_snapshot_is_refused_400(env):
    vid = available_volume(env, 10)
    sid = available_snapshot(env, vid)
    _set(env, models.Volume, vid, size=20)
    exc = _refused(env, exception.InvalidVolume, vid, sid, match="20 GiB.*10 GiB")
    assert exc.code == 400


@pytest.mark.parametrize("status", ["in-use", "error", "extending", "reserved"])
def test_a_volume_that_is_not_available_is_refused_409(env, status):
    vid = available_volume(env, 10)
    sid = available_snapshot(env, vid)
    _set(env, models.Volume, vid, status=status)
    exc = _refused(env, exception.Conflict, vid, sid, match="only when available")
    assert exc.code == 409


@pytest.mark.parametrize("status", ["creating", "deleting", "error"])
def test_a_snapshot_that_is_not_available_is_refused_409(env, status):
    vid = available_volume(env, 10)
    sid = available_snapshot(env, vid)
    with env.db.writer() as session:   # a raw write: any status, whatever led to it
        session.execute(models.Snapshot.__table__.update().where(
            models.Snapshot.id == sid).values(status=status))
    exc = _refused(env, exception.Conflict, vid, sid, match="only to an available snapshot")
    assert exc.code == 409


def test_a_second_revert_while_one_runs_is_refused(env):
    vid = available_volume(env, 10)
    sid = available_snapshot(env, vid)
    env.volumes.revert_to_snapshot(A, vid, sid)
    _refused(env, exception.Conflict, vid, sid, match="reverting")


@pytest.mark.parametrize("snapshot_id", [None, "", 42])
def test_a_bad_snapshot_id_is_refused(env, snapshot_id):
    vid = available_volume(env, 10)
    available_snapshot(env, vid)
    _refused(env, exception.InvalidInput, vid, snapshot_id)


def test_another_projects_volume_is_not_found(env):
    vid = available_volume(env, 10)
    sid = available_snapshot(env, vid)
    _refused(env, exception.VolumeNotFound, vid, sid, ctx=B)
