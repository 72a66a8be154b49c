"""Client library: group / group snapshot listings (scope, filters, sorting, paging),
group renames, and quota sets (show, defaults, update, reset, who may). Bad input raises a
typed error with nothing written (the whole state compared before/after)."""

from __future__ import annotations

import pytest

from blockmgr import exception
from blockmgr import quota as bm_quota
from blockmgr.db import models
from blockmgr.db import repository
from tests.unit.test_api import A
from tests.unit.test_api import ADMIN
from tests.unit.test_api import B
from tests.unit.test_api import available_volume
from tests.unit.test_api import env  # noqa: F401  (fixture)
from tests.unit.test_api import placed_group
from tests.unit.test_api import state_of


def names(rows):
    return [r["name"] for r in rows]


def make_groups(env, ctx, names_):
    return [env.groups.create_group(ctx, name=n)["id"] for n in names_]


# --- group listing ----------------------------------------------------------------------------

def test_list_groups_is_scoped_to_the_project_newest_first(env):
    make_groups(env, A, ["a1", "a2", "a3"])
    make_groups(env, B, ["b1"])
    assert names(env.groups.list_groups(A)) == ["a3", "a2", "a1"]
    assert names(env.groups.list_groups(B)) == ["b1"]
    assert names(env.groups.list_groups(ADMIN)) == []          # the admin's own project
    assert sorted(names(env.groups.list_groups(ADMIN, all_projects=True))) == [
        "a1", "a2", "a3", "b1"]


def test_list_groups_pages_by_marker_without_overlap_even_on_equal_sort_values(env):
    ids = make_groups(env, A, ["same"] * 5 + ["other"])
    seen, marker = [], None
    while True:
        page = env.groups.list_groups(A, sort_keys=["name"], sort_dirs=["asc"], limit=2,
                                      marker=marker)
        if not page:
            break
        seen += page
        marker = page[-1]["id"]
    assert sorted(r["id"] for r in seen) == sorted(ids)
    assert names(seen) == ["other"] + ["same"] * 5
    assert [r["id"] for r in seen[1:]] == sorted(r["id"] for r in seen[1:])


def test_list_groups_filters_sorts_and_offsets(env):
    make_groups(env, A, ["b", "a", "c"])
    assert names(env.groups.list_groups(A, sort_keys=["name"], sort_dirs=["asc"])) == [
        "a", "b", "c"]
    assert names(env.groups.list_groups(A, sort_keys=["name"], sort_dirs=["desc"],
                                        offset=1, limit=1)) == ["b"]
    assert names(env.groups.list_groups(A, filters={"name": "a"})) == ["a"]
    assert env.groups.list_groups(A, filters={"status": "available"}) == []


@pytest.mark.parametrize("kwargs", [
    {"sort_keys": ["host"]},                      # not a public sort key
    {"sort_keys": ["name"], "sort_dirs": ["up"]},
    {"sort_keys": ["name", "name"]},
    {"filters": {"project_id": "pB"}},            # not a filter for a non-admin
    {"filters": {"name": 3}},
    {"limit": -1}, {"limit": True}, {"offset": "1"},
    {"marker": "0" * 36},                         # no such group
    {"all_projects": True},                       # not an admin
])
def test_bad_listing_arguments_are_invalid_input(env, kwargs):
    make_groups(env, A, ["a"])
    with pytest.raises(exception.InvalidInput):
        env.groups.list_groups(A, **kwargs)


def test_another_projects_group_is_not_a_marker(env):
    (theirs,) = make_groups(env, B, ["b"])
    with pytest.raises(exception.InvalidInput):
        env.groups.list_groups(A, marker=theirs)


# --- group snapshots --------------------------------------------------------------------------

def group_snapshot(env, ctx=A):
    gid = placed_group(env, ctx)
    vid = available_volume(env, 1, ctx=ctx)
    with env.db.writer() as session:
        repository.update(session, repository.get(session, models.Volume, vid), group_id=gid)
    return gid, env.groups.create_group_snapshot(ctx, gid, name="gs-" + ctx.project_id)


def test_list_and_show_group_snapshots(env):
    gid, gsnap = group_snapshot(env)
    group_snapshot(env, B)
    assert [r["id"] for r in env.groups.list_group_snapshots(A)] == [gsnap["id"]]
    assert env.groups.list_group_snapshots(A, filters={"group_id": gid})[0]["id"] == gsnap["id"]
    assert env.groups.list_group_snapshots(A, filters={"group_id": "x"}) == []
    assert env.groups.get_group_snapshot(A, gsnap["id"])["group_id"] == gid
    with pytest.raises(exception.GroupSnapshotNotFound):
        env.groups.get_group_snapshot(B, gsnap["id"])
    with pytest.raises(exception.InvalidInput):
        env.groups.list_group_snapshots(A, filters={"volume_id": "x"})


# --- renames ----------------------------------------------------------------------------------

def test_update_group_renames_without_a_cast_and_keeps_the_status(env):
    gid = placed_group(env)
    sent = list(env.vol.sent)
    row = env.groups.update_group(A, gid, name="new", description="d")
    assert (row["name"], row["description"], row["status"]) == ("new", "d", "available")
    assert env.vol.sent == sent
    assert env.groups.get_group(A, gid)["name"] == "new"


def test_update_group_renames_and_changes_membership_in_one_step(env):
    gid = placed_group(env)
    vid = available_volume(env)
    row = env.groups.update_group(A, gid, name="both", add_volumes=[vid])
    assert row["name"] == "both" and row["status"] == "updating"
    assert env.vol.sent[-1][0] == "update_group"


def test_bad_rename_writes_nothing(env):
    gid = placed_group(env)
    elsewhere = available_volume(env)
    with env.db.writer() as session:
        repository.update(session, repository.get(session, models.Volume, elsewhere),
                          host="n2@lvm#pool")
    before = state_of(env.db)
    for call, error in [
        (lambda: env.groups.update_group(A, gid, name="x" * 256), exception.InvalidInput),
        (lambda: env.groups.update_group(A, gid, name=5), exception.InvalidInput),
        (lambda: env.groups.update_group(B, gid, name="mine"), exception.GroupNotFound),
        # the rename is rolled back with the refused membership change
        (lambda: env.groups.update_group(A, gid, name="n", add_volumes=[elsewhere]),
         exception.InvalidVolume),
    ]:
        with pytest.raises(error):
            call()
        assert state_of(env.db) == before
    assert env.groups.get_group(A, gid)["name"] == "g"


# --- quota sets -------------------------------------------------------------------------------

def test_quota_show_defaults_and_usage(env):
    env.volumes.create_volume(A, 3)
    assert env.quotas.show(A, "pA")["volumes"] == env.conf.quota.volumes
    assert env.quotas.defaults(A, "pA") == {
        r: -1 if r.endswith("___DEFAULT__") else getattr(env.conf.quota, r)
        for r in env.quotas.resources}
    used = env.quotas.show(A, "pA", usage=True)
    assert used["volumes"] == {"in_use": 1, "reserved": 0, "limit": env.conf.quota.volumes}
    assert used["gigabytes"]["in_use"] == 3
    assert used["per_volume_gigabytes"]["in_use"] == 0


def test_quota_update_and_reset_by_an_admin(env):
    limits = env.quotas.update(ADMIN, "pA", {"volumes": 3, "gigabytes": -1})
    assert limits["volumes"] == 3 and limits["gigabytes"] == -1
    assert env.quotas.show(A, "pA")["volumes"] == 3
    assert env.quotas.show(B, "pB")["volumes"] == env.conf.quota.volumes
    assert env.quotas.reset(ADMIN, "pA")["volumes"] == env.conf.quota.volumes


@pytest.mark.parametrize("ctx,call,error", [
    (A, lambda q, c: q.update(c, "pA", {"volumes": 1}), exception.NotAuthorized),
    (A, lambda q, c: q.reset(c, "pA"), exception.NotAuthorized),
    (A, lambda q, c: q.show(c, "pB"), exception.NotAuthorized),
    (A, lambda q, c: q.defaults(c, "pB"), exception.NotAuthorized),
    (ADMIN, lambda q, c: q.update(c, "pA", {}), exception.InvalidInput),
    (ADMIN, lambda q, c: q.update(c, "pA", {"volumes": 1, "backups": 1}),
     exception.UnknownQuotaResource),
    (ADMIN, lambda q, c: q.update(c, "pA", {"snapshots": 1, "volumes": -2}),
     exception.InvalidQuotaValue),
    (ADMIN, lambda q, c: q.update(c, "pA", {"gigabytes": 1, "volumes": True}),
     exception.InvalidQuotaValue),
    (ADMIN, lambda q, c: q.update(c, "pA", {"volumes": bm_quota.MAX_QUOTA_VALUE + 1}),
     exception.InvalidQuotaValue),
    (ADMIN, lambda q, c: q.update(c, "", {"volumes": 1}), exception.InvalidInput),
    (ADMIN, lambda q, c: q.show(c, "pA", usage="yes"), exception.InvalidInput),
])
def test_bad_quota_calls_change_nothing(env, ctx, call, error):
    before = env.quotas.show(ADMIN, "pA")
    with pytest.raises(error):
        call(env.quotas, ctx)
    assert env.quotas.show(ADMIN, "pA") == before
