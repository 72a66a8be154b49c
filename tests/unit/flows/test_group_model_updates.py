"""Every cell of the driver model-update table (the consistency-group driver interface's
return conventions), through the VolumeManager on SQLite with the fake driver returning (or
raising) what each cell needs.

Cells where blockmgr deliberately differs from Cinder are marked ``[cinder-wrong]``:
non-blockmgr exceptions, kept entry errors in create_group_from_src, ``(None, [errors])``
from delete_group, destroyed-on-failure members, members left transitional.
"""

from __future__ import annotations

import pytest

from blockmgr import exception
from blockmgr.db import models
from blockmgr.flows import group_updates
from tests.unit.flows.test_group_flows import env  # noqa: F401  (fixture)
from tests.unit.flows.test_group_flows import (CTX, assert_settled, driver_returns, get,
                                               in_use, make_group, make_group_snapshot,
                                               make_members, make_volume, set_status,
                                               statuses)

DRIVER_ERRORS = [
    pytest.param(exception.VolumeBackendAPIException(reason="boom"),
                 exception.VolumeBackendAPIException, id="driver-error"),
    pytest.param(RuntimeError("not a blockmgr error"),           # [cinder-wrong]
                 exception.VolumeBackendAPIException, id="any-exception"),
]


def error_types(env):
    return [t for t in env.notifier.types() if t.endswith(".error")]


# --- create_group ---------------------------------------------------------------------------

@pytest.mark.parametrize("returned", [None, {"status": "available"}, {"status": "creating"}])
def test_create_group_success_returns(env, returned):
    gid = make_group(env)
    driver_returns(env, "create_consistencygroup", returned)
    env.create_group(CTX, gid)
    assert get(env, models.Group, gid).status == "available"


def test_create_group_model_error_raises(env):
    gid = make_group(env)
    driver_returns(env, "create_consistencygroup", {"status": "error"})
    with pytest.raises(exception.VolumeDriverException, match="error"):
        env.create_group(CTX, gid)
    assert get(env, models.Group, gid).status == "error"
    assert error_types(env) == ["group.create.error"]
    assert_settled(env)


@pytest.mark.parametrize("error,raised", DRIVER_ERRORS)
def test_create_group_driver_raises(env, error, raised):
    gid = make_group(env)
    env.driver.inject_failure("create_consistencygroup", error)
    with pytest.raises(raised):
        env.create_group(CTX, gid)
    assert get(env, models.Group, gid).status == "error"
    assert_settled(env)


# --- create_group_from_src ------------------------------------------------------------------

@pytest.fixture
def from_src(env):
    """A group snapshot of two volumes and a new group of two ``creating`` volumes."""
    gid = make_group(env, status="available")
    make_members(env, gid, count=2)
    gsid, sids = make_group_snapshot(env, gid)
    env.create_group_snapshot(CTX, gsid)
    new_gid = make_group(env)
    new_vids = [make_volume(env, status="creating", group_id=new_gid, on_backend=False,
                            snapshot_id=sid) for sid in sids]
    env.notifier.events.clear()
    return new_gid, gsid, new_vids


def test_from_src_none_means_all_available(env, from_src):
    new_gid, gsid, vids = from_src
    driver_returns(env, "create_consistencygroup_from_src", (None, None))
    env.create_group_from_src(CTX, new_gid, group_snapshot_id=gsid)
    assert get(env, models.Group, new_gid).status == "available"
    assert statuses(env, models.Volume, vids) == ["available", "available"]


def test_from_src_entry_error_is_kept(env, from_src):   # [cinder-wrong]: Cinder overwrites
    new_gid, gsid, vids = from_src
    driver_returns(env, "create_consistencygroup_from_src", (
        None, [{"id": vids[0], "status": "error"},
               {"id": vids[1], "status": "available", "provider_location": "here"}]))
    env.create_group_from_src(CTX, new_gid, group_snapshot_id=gsid)
    assert statuses(env, models.Volume, vids) == ["error", "available"]
    assert get(env, models.Volume, vids[1]).provider_location == "here"
    assert get(env, models.Group, new_gid).status == "available"
    assert_settled(env)


def test_from_src_model_error_is_ignored(env, from_src):
    new_gid, gsid, vids = from_src
    driver_returns(env, "create_consistencygroup_from_src", ({"status": "error"}, None))
    env.create_group_from_src(CTX, new_gid, group_snapshot_id=gsid)
    assert get(env, models.Group, new_gid).status == "available"
    assert statuses(env, models.Volume, vids) == ["available", "available"]


@pytest.mark.parametrize("error,raised", DRIVER_ERRORS)
def test_from_src_driver_raises(env, from_src, error, raised):
    new_gid, gsid, vids = from_src
    env.driver.inject_failure("create_consistencygroup_from_src", error)
    with pytest.raises(raised):
        env.create_group_from_src(CTX, new_gid, group_snapshot_id=gsid)
    assert get(env, models.Group, new_gid).status == "error"
    assert statuses(env, models.Volume, vids) == ["error", "error"]
    assert "group.create.error" in error_types(env)
    assert error_types(env).count("volume.create.error") == 2
    assert_settled(env)


# --- delete_group ---------------------------------------------------------------------------

@pytest.fixture
def doomed(env):
    gid = make_group(env, status="available")
    vids = make_members(env, gid, count=2, size=2)
    set_status(env, models.Group, gid, "deleting")
    env.notifier.events.clear()
    return gid, vids


def test_delete_group_none_destroys_everything(env, doomed):
    gid, vids = doomed
    driver_returns(env, "delete_consistencygroup", (None, None))
    env.delete_group(CTX, gid)
    assert get(env, models.Group, gid).deleted
    assert all(get(env, models.Volume, v).deleted for v in vids)
    assert in_use(env) == {"volumes": 0, "snapshots": 0, "gigabytes": 0, "groups": 0}
    assert_settled(env)


def test_delete_group_entry_error_deleting_promotes(env, doomed):   # behaviour 17
    gid, vids = doomed
    driver_returns(env, "delete_consistencygroup", (
        {"status": "deleted"}, [{"id": vids[0], "status": "error_deleting"},
                                {"id": vids[1], "status": "available"}]))
    with pytest.raises(exception.VolumeDriverException, match="error_deleting"):
        env.delete_group(CTX, gid)
    assert get(env, models.Group, gid).status == "error"
    assert statuses(env, models.Volume, vids) == ["error_deleting", "available"]
    assert not any(get(env, models.Volume, v).deleted for v in vids)
    assert in_use(env) == {"volumes": 2, "snapshots": 0, "gigabytes": 4, "groups": 1}
    assert error_types(env)[0] == "group.delete.error"
    assert_settled(env)


def test_delete_group_none_model_with_error_entries(env, doomed):   # [cinder-wrong]: crash
    gid, vids = doomed
    driver_returns(env, "delete_consistencygroup",
                   (None, [{"id": vids[0], "status": "error"}]))
    with pytest.raises(exception.VolumeDriverException):
        env.delete_group(CTX, gid)
    assert get(env, models.Group, gid).status == "error"
    # the entry is written; the member without an entry leaves ``deleting`` for ``error``
    assert statuses(env, models.Volume, vids) == ["error", "error"]
    assert_settled(env)


def test_delete_group_failure_destroys_members_reported_deleted(env, doomed):  # [cinder-wrong]
    gid, vids = doomed
    driver_returns(env, "delete_consistencygroup", (
        {"status": "error"}, [{"id": vids[0], "status": "deleted"},
                              {"id": vids[1], "status": "error_deleting"}]))
    with pytest.raises(exception.VolumeDriverException):
        env.delete_group(CTX, gid)
    assert get(env, models.Volume, vids[0]).deleted is True
    assert get(env, models.Volume, vids[1]).status == "error_deleting"
    assert get(env, models.Group, gid).status == "error"
    assert in_use(env) == {"volumes": 1, "snapshots": 0, "gigabytes": 2, "groups": 1}
    assert_settled(env)


@pytest.mark.parametrize("returned", [({"status": "error"}, None),
                                      ({"status": "error_deleting"}, None)])
def test_delete_group_model_error_without_entries(env, doomed, returned):
    gid, vids = doomed
    driver_returns(env, "delete_consistencygroup", returned)
    with pytest.raises(exception.VolumeDriverException):
        env.delete_group(CTX, gid)
    assert get(env, models.Group, gid).status == "error"
    assert statuses(env, models.Volume, vids) == ["error", "error"]
    assert_settled(env)


@pytest.mark.parametrize("error,raised", DRIVER_ERRORS)
def test_delete_group_driver_raises(env, doomed, error, raised):
    gid, vids = doomed
    env.driver.inject_failure("delete_consistencygroup", error)
    with pytest.raises(raised):
        env.delete_group(CTX, gid)
    assert get(env, models.Group, gid).status == "error"
    assert statuses(env, models.Volume, vids) == ["error", "error"]
    assert in_use(env)["volumes"] == 2
    assert_settled(env)


# --- update_group ---------------------------------------------------------------------------

@pytest.fixture
def updating(env):
    gid = make_group(env, status="updating")
    [old] = make_members(env, gid, count=1)
    new = make_volume(env)
    env.notifier.events.clear()
    return gid, new, old


def test_update_group_none_keeps_volume_statuses(env, updating):
    gid, new, old = updating
    driver_returns(env, "update_consistencygroup", (None, None, None))
    env.update_group(CTX, gid, add_volumes=[new], remove_volumes=[old])
    assert get(env, models.Group, gid).status == "available"
    assert statuses(env, models.Volume, [new, old]) == ["available", "available"]
    assert (get(env, models.Volume, new).group_id, get(env, models.Volume, old).group_id) \
        == (gid, None)


def test_update_group_entries_written_as_given(env, updating):
    gid, new, old = updating
    driver_returns(env, "update_consistencygroup", (
        None, [{"id": new, "status": "error", "provider_id": "p-7"}],
        [{"id": old, "status": "in-use"}]))
    env.update_group(CTX, gid, add_volumes=[new], remove_volumes=[old])
    assert get(env, models.Group, gid).status == "available"     # no promotion here
    assert statuses(env, models.Volume, [new, old]) == ["error", "in-use"]
    assert get(env, models.Volume, new).provider_id == "p-7"


def test_update_group_model_error(env, updating):
    gid, new, old = updating
    driver_returns(env, "update_consistencygroup", ({"status": "error"}, None, None))
    with pytest.raises(exception.VolumeDriverException):
        env.update_group(CTX, gid, add_volumes=[new], remove_volumes=[old])
    assert get(env, models.Group, gid).status == "error"
    assert statuses(env, models.Volume, [new, old]) == ["error", "error"]
    assert (get(env, models.Volume, new).group_id, get(env, models.Volume, old).group_id) \
        == (None, gid)                                          # membership unchanged
    assert_settled(env)


@pytest.mark.parametrize("error,raised", DRIVER_ERRORS)
def test_update_group_driver_raises(env, updating, error, raised):
    gid, new, old = updating
    env.driver.inject_failure("update_consistencygroup", error)
    with pytest.raises(raised):
        env.update_group(CTX, gid, add_volumes=[new], remove_volumes=[old])
    assert get(env, models.Group, gid).status == "error"
    assert statuses(env, models.Volume, [new, old]) == ["error", "error"]
    assert get(env, models.Volume, new).group_id is None


# --- create_group_snapshot (behaviour 18) --------------------------------------------------------

@pytest.fixture
def gsnap(env):
    gid = make_group(env, status="available")
    make_members(env, gid, count=2)
    gsid, sids = make_group_snapshot(env, gid)
    env.notifier.events.clear()
    return gsid, sids


def test_create_group_snapshot_none_means_all_available(env, gsnap):
    gsid, sids = gsnap
    driver_returns(env, "create_cgsnapshot", (None, None))
    env.create_group_snapshot(CTX, gsid)
    assert get(env, models.GroupSnapshot, gsid).status == "available"
    assert statuses(env, models.Snapshot, sids) == ["available", "available"]
    assert get(env, models.Snapshot, sids[0]).progress == "100%"


def test_create_group_snapshot_entry_error_promotes(env, gsnap):
    gsid, sids = gsnap
    driver_returns(env, "create_cgsnapshot", (
        {"status": "available"}, [{"id": sids[0], "status": "error"},
                                  {"id": sids[1], "status": "available"}]))
    with pytest.raises(exception.VolumeDriverException):
        env.create_group_snapshot(CTX, gsid)
    assert get(env, models.GroupSnapshot, gsid).status == "error"
    assert statuses(env, models.Snapshot, sids) == ["error", "available"]
    assert_settled(env)


def test_create_group_snapshot_model_error_members_keep_driver_status(env, gsnap):
    gsid, sids = gsnap
    driver_returns(env, "create_cgsnapshot",
                   ({"status": "error"}, [{"id": sids[0], "status": "available"}]))
    with pytest.raises(exception.VolumeDriverException):
        env.create_group_snapshot(CTX, gsid)
    assert get(env, models.GroupSnapshot, gsid).status == "error"
    # the one without an entry does not stay ``creating`` ([cinder-wrong])
    assert statuses(env, models.Snapshot, sids) == ["available", "error"]
    assert_settled(env)


@pytest.mark.parametrize("error,raised", DRIVER_ERRORS)
def test_create_group_snapshot_driver_raises(env, gsnap, error, raised):
    gsid, sids = gsnap
    env.driver.inject_failure("create_cgsnapshot", error)
    with pytest.raises(raised):
        env.create_group_snapshot(CTX, gsid)
    assert get(env, models.GroupSnapshot, gsid).status == "error"
    assert statuses(env, models.Snapshot, sids) == ["error", "error"]
    assert error_types(env).count("snapshot.create.error") == 2
    assert_settled(env)


# --- delete_group_snapshot ------------------------------------------------------------------

@pytest.fixture
def doomed_gsnap(env, gsnap):
    gsid, sids = gsnap
    env.create_group_snapshot(CTX, gsid)
    set_status(env, models.GroupSnapshot, gsid, "deleting")
    return gsid, sids


def test_delete_group_snapshot_none_destroys_all(env, doomed_gsnap):
    gsid, sids = doomed_gsnap
    driver_returns(env, "delete_cgsnapshot", (None, None))
    env.delete_group_snapshot(CTX, gsid)
    assert get(env, models.GroupSnapshot, gsid).deleted
    assert all(get(env, models.Snapshot, s).deleted for s in sids)
    assert in_use(env)["snapshots"] == 0
    assert_settled(env)


@pytest.mark.parametrize("entry_status", ["error", "error_deleting"])
def test_delete_group_snapshot_entry_error_promotes(env, doomed_gsnap, entry_status):
    gsid, sids = doomed_gsnap
    driver_returns(env, "delete_cgsnapshot", (
        None, [{"id": sids[0], "status": entry_status}, {"id": sids[1], "status": "deleted"}]))
    with pytest.raises(exception.VolumeDriverException):
        env.delete_group_snapshot(CTX, gsid)
    assert get(env, models.GroupSnapshot, gsid).status == "error"
    assert get(env, models.Snapshot, sids[0]).status == entry_status
    assert get(env, models.Snapshot, sids[1]).deleted is True          # [cinder-wrong]
    assert in_use(env)["snapshots"] == 1
    assert_settled(env)


def test_delete_group_snapshot_model_error(env, doomed_gsnap):
    gsid, sids = doomed_gsnap
    driver_returns(env, "delete_cgsnapshot", ({"status": "error_deleting"}, None))
    with pytest.raises(exception.VolumeDriverException):
        env.delete_group_snapshot(CTX, gsid)
    assert get(env, models.GroupSnapshot, gsid).status == "error"
    assert statuses(env, models.Snapshot, sids) == ["error", "error"]
    assert_settled(env)


@pytest.mark.parametrize("error,raised", DRIVER_ERRORS)
def test_delete_group_snapshot_driver_raises(env, doomed_gsnap, error, raised):
    gsid, sids = doomed_gsnap
    env.driver.inject_failure("delete_cgsnapshot", error)
    with pytest.raises(raised):
        env.delete_group_snapshot(CTX, gsid)
    assert get(env, models.GroupSnapshot, gsid).status == "error"
    assert statuses(env, models.Snapshot, sids) == ["error", "error"]
    assert in_use(env)["snapshots"] == 2
    assert_settled(env)


# --- malformed returns and the pure rules ---------------------------------------------------

@pytest.mark.parametrize("returned", [{"status": "error"}, (None,), ([], None),
                                      (None, [{"status": "available"}]), (None, "x")])
def test_malformed_driver_return_fails_cleanly(env, gsnap, returned):
    gsid, sids = gsnap
    driver_returns(env, "create_cgsnapshot", returned)
    with pytest.raises(exception.VolumeDriverException, match="create_group_snapshot returned"):
        env.create_group_snapshot(CTX, gsid)
    assert get(env, models.GroupSnapshot, gsid).status == "error"
    assert statuses(env, models.Snapshot, sids) == ["error", "error"]


def test_rules_ignore_foreign_ids_and_unknown_statuses():
    rule = group_updates.RULES["create_group_snapshot"]
    outcome = group_updates.decide(rule, None, [
        {"id": "stranger", "status": "error"},
        {"id": "s1", "status": "deleted"},          # not a status a create may write
        {"id": "s2", "provider_id": "x", "size": 9}], ["s1", "s2"])
    assert not outcome.failed
    assert outcome.member_status == {"s1": "available", "s2": "available"}
    assert outcome.member_fields == {"s2": {"provider_id": "x"}}


def test_rules_promotion_keeps_an_existing_error_model_status():
    rule = group_updates.RULES["delete_group"]
    outcome = group_updates.decide(rule, {"status": "error"},
                                   [{"id": "v1", "status": "error_deleting"}], ["v1", "v2"])
    assert outcome.failed and "error" in outcome.reason
    assert outcome.member_status == {"v1": "error_deleting", "v2": "error"}
    assert outcome.destroy == []
