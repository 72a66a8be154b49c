"""extend_volume flow through the VolumeManager (docs/behaviours.md row 13):
reservations adopted from the API and owned by the flow, in-process on SQLite."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from blockmgr import exception
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import extend_volume
from blockmgr.testing.fake_driver import GiB
from tests.unit.flows.test_delete_volume import env  # noqa: F401 (the fixture)
from tests.unit.flows.test_delete_volume import (CTX, PROJECT, assert_settled, error_events,
                                                 get, in_use, make_volume, set_status)


def _extending(env, size=2, attached=False, reserve=None):
    """A volume the API moved to ``extending``; returns (id, the API's reservation uuids)."""
    vid = make_volume(env, size=size)
    previous = "available"
    if attached:
        set_status(env, models.Volume, vid, "in-use", attach_status="attached")
        previous = "in-use"
    set_status(env, models.Volume, vid, "extending", previous_status=previous)
    uuids = env.quota.reserve(PROJECT, gigabytes=reserve) if reserve else []
    return vid, uuids


def _reserved(env):
    return env.quota.get_usages(PROJECT)["gigabytes"]["reserved"]


def test_extend_commits_the_adopted_reservations(env):
    vid, uuids = _extending(env, size=2, reserve=3)
    assert _reserved(env) == 3
    env.extend_volume(CTX, vid, 5, reservations=uuids)
    row = get(env, models.Volume, vid)
    assert (row.status, row.size, row.previous_status) == ("available", 5, None)
    assert env.driver.volumes["volume-%s" % vid].size == 5 * GiB
    assert in_use(env)["gigabytes"] == 5 and _reserved(env) == 0
    assert env.notifier.types() == ["volume.resize.start", "volume.resize.end"]
    assert env.notifier.events[-1][2]["size"] == 5
    assert env.capacity.get("pool") == 5
    with env.db.reader() as session:   # what was committed was owned by the flow
        owners = set(session.scalars(sa.select(models.Reservation.owner)
                                     .where(models.Reservation.uuid.not_in(uuids))))
    assert len(owners) == 1 and None not in owners
    assert_settled(env)


def test_extend_without_api_reservations_reserves_itself(env):
    vid, _ = _extending(env, size=1)
    env.extend_volume(CTX, vid, 4)
    assert get(env, models.Volume, vid).size == 4
    assert in_use(env)["gigabytes"] == 4
    assert_settled(env)


def test_extend_attached_volume_ends_in_use(env):
    vid, uuids = _extending(env, size=1, attached=True, reserve=1)
    env.extend_volume(CTX, vid, 2, reservations=uuids)
    assert get(env, models.Volume, vid).status == "in-use"
    assert_settled(env)


def test_extend_driver_failure_rolls_everything_back(env):
    vid, uuids = _extending(env, size=2, reserve=3)
    env.driver.inject_failure("extend_volume", exception.VolumeBackendAPIException(reason="x"))
    with pytest.raises(exception.VolumeBackendAPIException):
        env.extend_volume(CTX, vid, 5, reservations=uuids)
    row = get(env, models.Volume, vid)
    assert (row.status, row.size) == ("error_extending", 2)
    assert in_use(env)["gigabytes"] == 2 and _reserved(env) == 0
    assert "volume.resize.end" not in env.notifier.types()
    assert error_events(env) == [("ERROR", "volume.resize.error")]
    assert env.capacity.get("pool") == 2
    assert_settled(env)


def test_extend_over_quota_when_the_api_did_not_reserve(env):
    vid, _ = _extending(env, size=2)
    env.quota.set_limit(PROJECT, "gigabytes", 3)
    with pytest.raises(exception.OverQuota):
        env.extend_volume(CTX, vid, 5)
    assert get(env, models.Volume, vid).status == "error_extending"
    assert env.driver.calls_to("extend_volume") == []
    assert_settled(env)


def test_extend_adoption_is_atomic_under_a_full_quota(env):
    """At the limit, swapping the API's reservation for the flow's own must not fail: the
    rollback and the new reservation are one transaction."""
    vid, uuids = _extending(env, size=2, reserve=3)
    env.quota.set_limit(PROJECT, "gigabytes", 5)
    env.extend_volume(CTX, vid, 5, reservations=uuids)
    assert in_use(env)["gigabytes"] == 5
    assert_settled(env)


@pytest.mark.parametrize("new_size", [2, 1, "7", None])
def test_extend_to_a_bad_size_errors_and_releases_reservations(env, new_size):
    vid, uuids = _extending(env, size=2, reserve=1)
    with pytest.raises(exception.InvalidInput):
        env.extend_volume(CTX, vid, new_size, reservations=uuids)
    assert get(env, models.Volume, vid).status == "error_extending"
    assert _reserved(env) == 0
    assert env.driver.calls_to("extend_volume") == []
    assert_settled(env)


def test_extend_of_a_volume_not_extending_is_left_alone(env):
    vid = make_volume(env, size=2)
    uuids = env.quota.reserve(PROJECT, gigabytes=1)
    with pytest.raises(exception.InvalidVolume):
        env.extend_volume(CTX, vid, 3, reservations=uuids)
    assert get(env, models.Volume, vid).status == "available"
    assert _reserved(env) == 0                 # the API's reservation is not leaked
    assert_settled(env)


def test_extend_rejects_malformed_reservations(env):
    vid, _ = _extending(env)
    with pytest.raises(exception.InvalidInput):
        env.extend_volume(CTX, vid, 3, reservations="not-a-list")


def test_flow_tasks_repeat_safely(env):
    """Tasks that ran just before a crash run again on resume: a second quota swap and a
    second finish change nothing."""
    vid, uuids = _extending(env, size=2, reserve=3)
    before = in_use(env)["gigabytes"]
    runtime = env.runtime()
    ref = {"size": 2, "project_id": PROJECT, "use_quota": True, "attached": False}
    flow_id = "11111111-2222-4333-8444-555555555555"
    first = extend_volume.ReserveExtendQuotaTask().execute(runtime, flow_id, 5, ref, uuids)
    again = extend_volume.ReserveExtendQuotaTask().execute(runtime, flow_id, 5, ref, uuids)
    assert first == again and _reserved(env) == 3
    finish = extend_volume.ExtendVolumeOnFinishTask("resize.end")
    finish.execute(runtime, CTX.to_dict(), flow_id, vid, 5, ref)
    finish.execute(runtime, CTX.to_dict(), flow_id, vid, 5, ref)
    assert in_use(env)["gigabytes"] == before + 3 and _reserved(env) == 0   # committed once
    with env.db.reader() as session:
        row = repository.get(session, models.Volume, vid)
        assert (row.status, row.size) == ("available", 5)


def test_a_repeated_finish_leaves_the_next_extend_alone(env):
    """A finish repeated after a crash, when the API already made the volume ``extending``
    again for a second extend: it writes nothing (size and status stay the second
    request's) and commits nothing."""
    vid, uuids = _extending(env, size=2, reserve=1)
    env.extend_volume(CTX, vid, 3, reservations=uuids)
    set_status(env, models.Volume, vid, "extending", previous_status="available")
    second = env.quota.reserve(PROJECT, gigabytes=2)
    usage = in_use(env)["gigabytes"]
    ref = {"size": 2, "project_id": PROJECT, "use_quota": True, "attached": False}
    finish = extend_volume.ExtendVolumeOnFinishTask("resize.end")
    finish.execute(env.runtime(), CTX.to_dict(), "11111111-2222-4333-8444-555555555555",
                   vid, 3, ref)
    with env.db.reader() as session:
        row = repository.get(session, models.Volume, vid)
        assert (row.status, row.size) == ("extending", 3)
    assert in_use(env)["gigabytes"] == usage and _reserved(env) == 2
    env.extend_volume(CTX, vid, 5, reservations=second)
    assert in_use(env)["gigabytes"] == usage + 2 and _reserved(env) == 0


def test_a_finish_refuses_a_volume_moved_on_while_the_flow_holds_its_reservation(env):
    """Not this flow's earlier run but someone else (an operator's reset) moved the row
    (to ``error_extending``): the commit is rolled back and the task fails, so the flow's
    revert releases the reservation instead of charging it for a size the volume never
    got."""
    vid, uuids = _extending(env, size=2, reserve=3)
    runtime = env.runtime()
    ref = {"size": 2, "project_id": PROJECT, "use_quota": True, "attached": False}
    flow_id = "11111111-2222-4333-8444-555555555555"
    extend_volume.ReserveExtendQuotaTask().execute(runtime, flow_id, 5, ref, uuids)
    set_status(env, models.Volume, vid, "error_extending")
    usage = in_use(env)["gigabytes"]
    with pytest.raises(exception.InvalidStatusTransition, match="holds its reservations"):
        extend_volume.ExtendVolumeOnFinishTask("resize.end").execute(
            runtime, CTX.to_dict(), flow_id, vid, 5, ref)
    assert in_use(env)["gigabytes"] == usage and env.quota.reservations_of(flow_id) != []
