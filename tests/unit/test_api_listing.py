"""Client library listings (filters, sorting, keyset paging, scope) and renames of volumes
and snapshots; bad input -> InvalidInput / NotFound with nothing written."""

from __future__ import annotations

import pytest

from blockmgr import exception
from blockmgr.api import listing
from blockmgr.db import models
from tests.unit.test_api import (A, ADMIN, B, available_snapshot,  # noqa: F401
                                 available_volume, env)
from tests.unit.test_api import state_of


@pytest.fixture
def five(env):  # noqa: F811
    """Five volumes of pA created in the order c, a, b, e, d (sizes 3, 1, 2, 5, 4)."""
    ids = {}
    for size, name in ((3, "c"), (1, "a"), (2, "b"), (5, "e"), (4, "d")):
        ids[name] = env.volumes.create_volume(A, size, name=name)["id"]
    return ids


def names(rows):
    return [r["display_name"] for r in rows]


def test_order_paging_and_filters(env, five):  # noqa: F811
    vols = env.volumes
    assert names(vols.list_volumes(A)) == ["d", "e", "b", "a", "c"]    # newest first
    assert names(vols.list_volumes(A, sort_keys=["size"], sort_dirs=["asc"])) == list("abcde")
    assert names(vols.list_volumes(A, sort_keys=["name"])) == list("edcba")   # desc default
    assert names(vols.list_volumes(A, sort_keys=["status", "name"],
                                   sort_dirs=["asc", "asc"])) == list("abcde")
    # keyset pages: after the marker in the sort order, whatever was created since
    page1 = vols.list_volumes(A, sort_keys=["size"], sort_dirs=["asc"], limit=2)
    assert names(page1) == ["a", "b"]
    vols.create_volume(A, 1, name="a2")            # sorts before the marker: not repeated
    page2 = vols.list_volumes(A, sort_keys=["size"], sort_dirs=["asc"], limit=2,
                              marker=page1[-1]["id"])
    assert names(page2) == ["c", "d"]
    assert names(vols.list_volumes(A, sort_keys=["size"], sort_dirs=["asc"], offset=4,
                                   limit=1)) == ["d"]
    assert vols.list_volumes(A, limit=0) == []
    assert names(vols.list_volumes(A, filters={"name": "e"})) == ["e"]
    assert len(vols.list_volumes(A, filters={"status": "creating"})) == 6
    assert vols.list_volumes(A, filters={"status": "available"}) == []


def test_ties_and_null_names_page_without_overlap(env):  # noqa: F811
    made = {env.volumes.create_volume(A, 1)["id"] for _ in range(5)}   # all unnamed, 1 GiB
    seen, marker = [], None
    while True:
        rows = env.volumes.list_volumes(A, sort_keys=["name", "size"], limit=2,
                                        marker=marker)
        if not rows:
            break
        seen += [r["id"] for r in rows]
        marker = rows[-1]["id"]
    assert len(seen) == 5 and set(seen) == made


def test_scope_projects_and_admin(env, five):  # noqa: F811
    other = env.volumes.create_volume(B, 1, name="b-vol")["id"]
    assert names(env.volumes.list_volumes(B)) == ["b-vol"]
    assert env.volumes.list_volumes(ADMIN) == []                       # admin's own project
    everyone = env.volumes.list_volumes(ADMIN, all_projects=True)
    assert len(everyone) == 6
    only_b = env.volumes.list_volumes(ADMIN, all_projects=True, filters={"project_id": "pB"})
    assert [r["id"] for r in only_b] == [other]
    with pytest.raises(exception.InvalidInput, match="only an admin"):
        env.volumes.list_volumes(A, all_projects=True)
    with pytest.raises(exception.InvalidInput, match="cannot filter by 'project_id'"):
        env.volumes.list_volumes(A, filters={"project_id": "pB"})
    with pytest.raises(exception.InvalidInput, match="not a volume in this listing"):
        env.volumes.list_volumes(A, marker=other)          # another project's id as marker


@pytest.mark.parametrize("kwargs, match", [
    ({"filters": {"colour": "red"}}, "cannot filter by 'colour'"),
    ({"filters": {"name": 5}}, "must be a string"),
    ({"filters": {"status": "melting"}}, "not a volume status"),
    ({"filters": {"name": "x" * 300}}, "longer than"),
    ({"filters": ["name"]}, "filters must be a dict"),
    ({"sort_keys": ["colour"]}, "cannot sort by 'colour'"),
    ({"sort_keys": ["size", "size"]}, "given twice"),
    ({"sort_keys": ["size"], "sort_dirs": ["up"]}, "asc or desc"),
    ({"sort_keys": ["size"], "sort_dirs": ["asc", "asc"]}, "at most one per sort key"),
    ({"sort_dirs": ["asc"]}, "without sort keys"),
    ({"limit": -1}, "limit must be an integer >= 0"),
    ({"limit": True}, "limit"),
    ({"offset": "2"}, "offset"),
    ({"marker": 7}, "marker must be the id"),
    ({"marker": "8a1f0c1e-0000-4000-8000-000000000000"}, "not a volume in this listing"),
    ({"all_projects": "yes"}, "all_projects must be a boolean"),
])
def test_bad_listing_arguments(env, kwargs, match):  # noqa: F811
    with pytest.raises(exception.InvalidInput, match=match):
        env.volumes.list_volumes(A, **kwargs)


def test_snapshot_listing_filters_by_volume(env):  # noqa: F811
    v1, v2 = available_volume(env), available_volume(env)
    s1 = available_snapshot(env, v1)
    s2 = available_snapshot(env, v2)
    assert [r["id"] for r in env.snapshots.list_snapshots(A, filters={"volume_id": v2})] == [s2]
    assert [r["id"] for r in env.snapshots.list_snapshots(
        A, sort_keys=["created_at"], sort_dirs=["asc"])] == [s1, s2]
    assert env.snapshots.list_snapshots(B) == []
    with pytest.raises(exception.InvalidInput, match="not a snapshot status"):
        env.snapshots.list_snapshots(A, filters={"status": "in-use"})


def test_rename_volume_and_snapshot(env):  # noqa: F811
    vid = available_volume(env)
    sid = available_snapshot(env, vid)
    row = env.volumes.update_volume(A, vid, name="data", description="logs")
    assert (row["display_name"], row["display_description"]) == ("data", "logs")
    assert env.volumes.update_volume(A, vid, description=None)["display_description"] is None
    assert env.volumes.get_volume(A, vid)["display_name"] == "data"
    assert env.snapshots.update_snapshot(A, sid, name="s")["display_name"] == "s"
    assert env.volumes.update_volume(ADMIN, vid, name="by-admin")["display_name"] == "by-admin"

    before = state_of(env.db)
    with env.db.reader() as session:
        names_before = session.get(models.Volume, vid).display_name
    for call, error in [
        (lambda: env.volumes.update_volume(A, vid), exception.InvalidInput),
        (lambda: env.volumes.update_volume(A, vid, size=3), exception.InvalidInput),
        (lambda: env.volumes.update_volume(A, vid, name="x" * 256), exception.InvalidInput),
        (lambda: env.volumes.update_volume(A, vid, name=5), exception.InvalidInput),
        (lambda: env.volumes.update_volume(B, vid, name="stolen"), exception.VolumeNotFound),
        (lambda: env.snapshots.update_snapshot(B, sid, name="x"), exception.SnapshotNotFound),
        (lambda: env.snapshots.update_snapshot(A, sid, status="error"),
         exception.InvalidInput),
    ]:
        with pytest.raises(error):
            call()
    assert state_of(env.db) == before
    with env.db.reader() as session:
        assert session.get(models.Volume, vid).display_name == names_before


def test_generic_check_accepts_plain_column_names():
    """Resources whose public names are their columns (groups) declare plain tuples."""
    query = listing.check(filters={"name": "g"}, sort_keys=["name"], sort_dirs=["asc"],
                          sortable=("name", "id"), filterable=("name",))
    assert query.filters == {"name": "g"} and query.order == (("name", "asc"),)
    assert listing.check().order == listing.DEFAULT_ORDER


def test_manageable_listing_takes_cinder_sort_key_and_a_source_name_marker(env):  # noqa: F811
    env.volumes.get_manageable_volumes(ADMIN, "n1@lvm", marker="disk-7",
                                       sort_keys=["reference"], sort_dirs=["asc"])
    _method, _host, kwargs = env.vol.sent[-1]
    assert kwargs["marker"] == {"source-name": "disk-7"}
    assert kwargs["sort_keys"] == ["identifier"] and kwargs["sort_dirs"] == ["asc"]
