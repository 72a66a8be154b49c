"""Consistency-group flows through the VolumeManager (docs/behaviours.md rows 17-18).

In-process on SQLite: the fake driver for injected returns and failures, the loopback driver
for one real end-to-end run (create group -> group snapshot -> group from it -> delete all).
The per-cell model-update rules are in ``test_group_model_updates.py``; this file covers the
operations themselves: statuses, quota, notifications, validation, locks, capacity.
"""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.drivers import loader
from blockmgr.interface.objects import VolumeView
from blockmgr.notifications import MemoryNotifier
from blockmgr.quota import QuotaEngine
from blockmgr.testing.fake_driver import FakeDriver
from blockmgr.volume.manager import VolumeManager

PROJECT = "p1"
CTX = bm_context.RequestContext(project_id=PROJECT, user_id="u1")
MISSING = "00000000-0000-4000-8000-000000000000"


# --- helpers shared with test_group_model_updates.py ---------------------------------------

def build(conf, db, driver, backend="fake"):
    conf.set_override("host", "node1")
    conf.set_override("connection", db.url, group="database")
    manager = VolumeManager(conf, backend, db=db, driver=driver,
                            quota=QuotaEngine(db, conf), notifier=MemoryNotifier())
    manager.init_host()
    return manager


@pytest.fixture
def env(sqlite_database, conf):
    return build(conf, sqlite_database, FakeDriver(None, "fake", host="node1@fake"))


def make_group(env, status="creating", host=None, **values):
    """A group row as the API leaves it, with its committed ``groups: +1``."""
    with env.db.writer() as session:
        row = repository.create(session, models.Group, status=status, project_id=PROJECT,
                                host=host or env.host + "#pool", **values)
        env.quota.consume(session, PROJECT, groups=1)
        return row.id


def make_volume(env, status="available", size=1, on_backend=True, **values):
    with env.db.writer() as session:
        row = repository.create(session, models.Volume, status=status, size=size,
                                host=env.host + "#pool", project_id=PROJECT, **values)
        env.quota.consume(session, PROJECT, volumes=1, gigabytes=size)
        vid = row.id
    if on_backend:
        env.driver.create_volume(VolumeView(id=vid, size=size))
    with env.db.reader() as session:
        env.capacity.load(session, env.host)
    return vid


def make_members(env, group_id, count=2, size=1, **values):
    return [make_volume(env, size=size, group_id=group_id, **values) for _ in range(count)]


def make_group_snapshot(env, group_id, status="creating", member_status="creating"):
    """A group snapshot and one snapshot per group volume, quota counted (as the API does)."""
    with env.db.writer() as session:
        gsnap = repository.create(session, models.GroupSnapshot, group_id=group_id,
                                  status=status, project_id=PROJECT)
        sids = []
        for vol in repository.volumes_in_group(session, group_id):
            snap = repository.create(session, models.Snapshot, volume_id=vol.id,
                                     group_snapshot_id=gsnap.id, status=member_status,
                                     volume_size=vol.size, project_id=PROJECT)
            gigabytes = 0 if env.conf.quota.no_snapshot_gb_quota else vol.size
            env.quota.consume(session, PROJECT, snapshots=1, gigabytes=gigabytes)
            sids.append(snap.id)
        return gsnap.id, sids


def set_status(env, model, resource_id, status, **values):
    with env.db.writer() as session:
        repository.update(session, repository.get(session, model, resource_id),
                          status=status, **values)


def get(env, model, resource_id):
    with env.db.reader() as session:
        row = repository.get(session, model, resource_id, read_deleted=True)
        session.expunge(row)
        return row


def statuses(env, model, ids):
    return [get(env, model, i).status for i in ids]


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


def driver_returns(env, method, value):
    """Make the driver's ``method`` return ``value`` (recording its arguments)."""
    calls = []

    def replacement(*args, **kwargs):
        calls.append((args, kwargs))
        return value

    setattr(env.driver, method, replacement)
    return calls


class NoGroupsDriver:
    """Every driver capability of the wrapped driver except consistency groups."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)


# --- create group ---------------------------------------------------------------------------

def test_create_group_success(env):
    gid = make_group(env)
    assert env.create_group(CTX, gid) == gid
    assert get(env, models.Group, gid).status == "available"
    assert gid in env.driver.groups
    assert env.notifier.types() == ["group.create.start", "group.create.end"]
    assert in_use(env)["groups"] == 1
    assert_settled(env)


def test_create_group_unsupported_driver_errors_the_group(sqlite_database, conf):
    env = build(conf, sqlite_database,
                NoGroupsDriver(FakeDriver(None, "fake", host="node1@fake")))
    gid = make_group(env)
    with pytest.raises(exception.Unsupported, match="ConsistencyGroupDriver"):
        env.create_group(CTX, gid)
    assert get(env, models.Group, gid).status == "error"
    assert env.notifier.types() == ["group.create.start", "group.create.error"]
    assert_settled(env)


def test_create_group_not_creating_is_left_alone(env):
    gid = make_group(env, status="available")
    with pytest.raises(exception.InvalidGroup):
        env.create_group(CTX, gid)
    assert get(env, models.Group, gid).status == "available"
    assert env.driver.calls_to("create_consistencygroup") == []


def test_group_of_another_backend_is_refused_before_any_flow(env):
    gid = make_group(env, host="other@fake#pool")
    with pytest.raises(exception.InvalidGroup, match="not on this backend"):
        env.create_group(CTX, gid)
    assert get(env, models.Group, gid).status == "creating"
    with pytest.raises(exception.GroupNotFound):
        env.create_group(CTX, MISSING)
    with pytest.raises(exception.InvalidInput):
        env.create_group(CTX, "")


# --- delete group (behaviour 17) -----------------------------------------------------------------

def test_delete_group_destroys_members_and_returns_quota(env):
    gid = make_group(env, status="available")
    vids = make_members(env, gid, count=2, size=3)
    assert env.capacity.get("pool") == 6
    set_status(env, models.Group, gid, "deleting")
    env.notifier.events.clear()
    assert env.delete_group(CTX, gid) == gid
    group = get(env, models.Group, gid)
    assert (group.status, group.deleted) == ("deleted", True)
    for vid in vids:
        row = get(env, models.Volume, vid)
        assert (row.status, row.deleted) == ("deleted", True)
        assert "volume-%s" % vid not in env.driver.volumes
    assert in_use(env) == {"volumes": 0, "snapshots": 0, "gigabytes": 0, "groups": 0}
    assert env.capacity.get("pool") == 0
    types = env.notifier.types()
    assert types[0] == "group.delete.start" and types.count("volume.delete.start") == 2
    assert "group.delete.end" in types and types.count("volume.delete.end") == 2
    with env.db.reader() as session:   # the returned quota is owned by the flow
        owners = set(session.scalars(sa.select(models.Reservation.owner)
                                     .where(models.Reservation.delta < 0)))
    assert len(owners) == 1 and None not in owners
    assert_settled(env)


def test_delete_group_refuses_attached_volume(env):
    gid = make_group(env, status="available")
    vids = make_members(env, gid, count=2)
    set_status(env, models.Volume, vids[0], "in-use", attach_status="attached")
    set_status(env, models.Group, gid, "deleting")
    with pytest.raises(exception.VolumeAttached):
        env.delete_group(CTX, gid)
    assert get(env, models.Group, gid).status == "error"
    assert statuses(env, models.Volume, vids) == ["in-use", "available"]
    assert env.driver.calls_to("delete_consistencygroup") == []
    assert in_use(env)["volumes"] == 2
    assert_settled(env)


def test_delete_group_refuses_member_in_flight(env):
    gid = make_group(env, status="deleting")
    [vid] = make_members(env, gid, count=1, status="creating", on_backend=False)
    with pytest.raises(exception.InvalidVolume, match="creating"):
        env.delete_group(CTX, gid)
    assert get(env, models.Volume, vid).status == "creating"


def test_delete_empty_group(env):
    gid = make_group(env, status="deleting")
    env.delete_group(CTX, gid)
    assert get(env, models.Group, gid).deleted is True
    assert in_use(env)["groups"] == 0
    assert_settled(env)


# --- update group ---------------------------------------------------------------------------

def test_update_group_changes_membership(env):
    gid = make_group(env, status="updating")
    [old] = make_members(env, gid, count=1)
    new = make_volume(env)
    env.update_group(CTX, gid, add_volumes=[new], remove_volumes=old)   # list and "a,b" form
    assert get(env, models.Group, gid).status == "available"
    assert get(env, models.Volume, new).group_id == gid
    assert get(env, models.Volume, old).group_id is None
    assert statuses(env, models.Volume, [new, old]) == ["available", "available"]
    [call] = env.driver.calls_to("update_consistencygroup")
    assert [v.id for v in call.kwargs["add_volumes"]] == [new]
    assert [v.id for v in call.kwargs["remove_volumes"]] == [old]
    types = env.notifier.types()
    assert types[0] == "group.update.start" and types.count("volume.update.end") == 2
    assert in_use(env)["groups"] == 1 and in_use(env)["volumes"] == 2
    assert_settled(env)


@pytest.mark.parametrize("case", ["bad-status", "other-group", "not-member", "both", "missing"])
def test_update_group_invalid_request_touches_no_volume(env, case):
    gid = make_group(env, status="updating")
    vid = make_volume(env, status="error" if case == "bad-status" else "available")
    kwargs = {"add_volumes": [vid]}
    if case == "other-group":
        set_status(env, models.Volume, vid, "available",
                   group_id=make_group(env, status="available"))
    elif case == "not-member":
        kwargs = {"remove_volumes": [vid]}
    elif case == "both":
        kwargs = {"add_volumes": [vid], "remove_volumes": [vid]}
    elif case == "missing":
        kwargs = {"add_volumes": [MISSING]}
    expected = {"both": exception.InvalidInput,
                "missing": exception.VolumeNotFound}.get(case, exception.InvalidVolume)
    with pytest.raises(expected):
        env.update_group(CTX, gid, **kwargs)
    assert get(env, models.Group, gid).status == "error"
    row = get(env, models.Volume, vid)
    assert row.status == ("error" if case == "bad-status" else "available")
    assert env.driver.calls_to("update_consistencygroup") == []


def test_update_group_rejects_malformed_id_lists(env):
    gid = make_group(env, status="updating")
    with pytest.raises(exception.InvalidInput):
        env.update_group(CTX, gid, add_volumes=[1, 2])
    assert get(env, models.Group, gid).status == "updating"


# --- group snapshots (behaviour 18) --------------------------------------------------------------

def test_create_group_snapshot_success(env):
    gid = make_group(env, status="available")
    vids = make_members(env, gid, count=2, size=2)
    gsid, sids = make_group_snapshot(env, gid)
    env.notifier.events.clear()
    assert env.create_group_snapshot(CTX, gsid) == gsid
    assert get(env, models.GroupSnapshot, gsid).status == "available"
    for sid in sids:
        row = get(env, models.Snapshot, sid)
        assert (row.status, row.progress) == ("available", "100%")
        assert "snapshot-%s" % sid in env.driver.snapshots
    [call] = env.driver.calls_to("create_cgsnapshot")
    assert sorted(s.volume_id for s in call.args[2]) == sorted(vids)
    types = env.notifier.types()
    assert types[0] == "group_snapshot.create.start"
    assert types.count("snapshot.create.start") == 2 and types.count("snapshot.create.end") == 2
    assert "group_snapshot.create.end" in types and not any(t.endswith(".error") for t in types)
    assert_settled(env)


def test_create_group_snapshot_not_creating_member_is_refused(env):
    gid = make_group(env, status="available")
    make_members(env, gid, count=1)
    gsid, [sid] = make_group_snapshot(env, gid, member_status="available")
    with pytest.raises(exception.InvalidSnapshot):
        env.create_group_snapshot(CTX, gsid)
    assert get(env, models.GroupSnapshot, gsid).status == "error"
    assert get(env, models.Snapshot, sid).status == "available"


@pytest.mark.parametrize("no_snapshot_gb", [False, True])
def test_delete_group_snapshot_returns_quota(env, no_snapshot_gb):
    env.conf.set_override("no_snapshot_gb_quota", no_snapshot_gb, group="quota")
    gid = make_group(env, status="available")
    make_members(env, gid, count=2, size=2)
    gsid, sids = make_group_snapshot(env, gid)
    env.create_group_snapshot(CTX, gsid)
    set_status(env, models.GroupSnapshot, gsid, "deleting")
    before = in_use(env)
    env.notifier.events.clear()
    assert env.delete_group_snapshot(CTX, gsid) == gsid
    assert get(env, models.GroupSnapshot, gsid).deleted is True
    for sid in sids:
        row = get(env, models.Snapshot, sid)
        assert (row.status, row.deleted) == ("deleted", True)
        assert "snapshot-%s" % sid not in env.driver.snapshots
    after = in_use(env)
    assert after["snapshots"] == before["snapshots"] - 2
    assert after["gigabytes"] == before["gigabytes"] - (0 if no_snapshot_gb else 4)
    types = env.notifier.types()
    assert types[0] == "group_snapshot.delete.start" and types.count("snapshot.delete.end") == 2
    assert_settled(env)


def test_delete_group_snapshot_holds_member_snapshot_locks(env):
    gid = make_group(env, status="available")
    make_members(env, gid, count=1)
    gsid, [sid] = make_group_snapshot(env, gid, status="deleting", member_status="available")
    held = []
    env.driver.inject_failure("delete_cgsnapshot",
                              lambda call: held.append(env.locks.held_names()))
    env.delete_group_snapshot(CTX, gsid)
    assert {gsid, "%s-delete_snapshot" % sid} <= held[0]


# --- create group from source ---------------------------------------------------------------

def _source_group_with_snapshot(env, sizes=(1, 2), bootable=(True, False)):
    gid = make_group(env, status="available")
    vids = [make_volume(env, size=s, group_id=gid, bootable=b) for s, b in zip(sizes, bootable)]
    gsid, sids = make_group_snapshot(env, gid)
    env.create_group_snapshot(CTX, gsid)
    return gid, vids, gsid, sids


def _target(env, sources, link, sizes):
    new_gid = make_group(env)
    new_vids = [make_volume(env, status="creating", size=size, group_id=new_gid,
                            on_backend=False, **{link: src})
                for src, size in zip(sources, sizes)]
    return new_gid, new_vids


def test_create_group_from_group_snapshot(env):
    _gid, vids, gsid, sids = _source_group_with_snapshot(env)
    new_gid, new_vids = _target(env, list(reversed(sids)), "snapshot_id", (2, 1))
    env.notifier.events.clear()
    assert env.create_group_from_src(CTX, new_gid, group_snapshot_id=gsid) == new_gid
    assert get(env, models.Group, new_gid).status == "available"
    rows = [get(env, models.Volume, v) for v in new_vids]
    assert [r.status for r in rows] == ["available", "available"]
    assert all(r.launched_at is not None for r in rows)
    origins = [get(env, models.Volume, get(env, models.Snapshot, r.snapshot_id).volume_id)
               for r in rows]
    assert [r.bootable for r in rows] == [o.bootable for o in origins]   # inherited
    assert sorted(r.bootable for r in rows) == [False, True]
    assert [r.provider_location for r in rows] == ["fake://fake/volume-%s" % v for v in new_vids]
    [call] = env.driver.calls_to("create_consistencygroup_from_src")
    volumes, snapshots = call.args[2], call.kwargs["snapshots"]
    assert sorted(v.id for v in volumes) == sorted(new_vids)
    assert [v.snapshot_id for v in volumes] == [s.id for s in snapshots]   # paired in order
    assert env.capacity.get("pool") == 3 + 3
    types = env.notifier.types()
    assert types[0] == "group.create.start" and types.count("volume.create.end") == 2
    assert_settled(env)


def test_create_group_from_source_group(env):
    gid = make_group(env, status="available")
    vids = make_members(env, gid, count=2, size=1)
    new_gid, new_vids = _target(env, vids, "source_volid", (1, 1))
    env.create_group_from_src(CTX, new_gid, source_group_id=gid)
    assert statuses(env, models.Volume, new_vids) == ["available", "available"]
    assert all("volume-%s" % v in env.driver.volumes for v in new_vids)
    assert_settled(env)


@pytest.mark.parametrize("case,error", [
    ("source-not-available", exception.InvalidGroup),
    ("count-mismatch", exception.InvalidInput),
    ("unmapped-source", exception.SnapshotNotFound),
])
def test_create_group_from_src_validation_errors_group_and_volumes(env, case, error):
    _gid, _vids, gsid, sids = _source_group_with_snapshot(env)
    if case == "source-not-available":
        set_status(env, models.Snapshot, sids[0], "error")
    links = sids[:1] if case == "count-mismatch" else sids
    if case == "unmapped-source":
        links = [sids[0], MISSING]
    new_gid, new_vids = _target(env, links, "snapshot_id", (1,) * len(links))
    with pytest.raises(error):
        env.create_group_from_src(CTX, new_gid, group_snapshot_id=gsid)
    assert get(env, models.Group, new_gid).status == "error"
    assert set(statuses(env, models.Volume, new_vids)) == {"error"}
    assert env.driver.calls_to("create_consistencygroup_from_src") == []
    assert_settled(env)


def test_create_group_from_src_needs_exactly_one_source(env):
    gid = make_group(env)
    with pytest.raises(exception.InvalidInput):
        env.create_group_from_src(CTX, gid)
    with pytest.raises(exception.InvalidInput):
        env.create_group_from_src(CTX, gid, group_snapshot_id=MISSING, source_group_id=MISSING)
    assert get(env, models.Group, gid).status == "creating"


# --- end to end on the loopback driver ------------------------------------------------------

def test_loopback_group_lifecycle(sqlite_database, conf, tmp_path):
    conf.set_override("enabled_backends", ["lb"])
    conf.register_opts(loader.find_driver_class("loopback").list_opts(), group="lb")
    conf.set_override("loopback_directory", str(tmp_path / "lb"), group="lb")
    conf.set_override("loopback_use_reflink", "never", group="lb")
    driver = loader.find_driver_class("loopback")(conf["lb"], "lb", host="node1@lb")
    driver.do_setup(None)
    env = build(conf, sqlite_database, driver, backend="lb")
    directory = driver.directory

    gid = make_group(env)
    env.create_group(CTX, gid)
    vids = []
    for size in (1, 2):
        vid = make_volume(env, status="creating", size=size, on_backend=False)
        env.create_volume(CTX, vid)
        vids.append(vid)
    with open(os.path.join(directory, "volume-%s" % vids[0]), "r+b") as f:
        f.write(b"group data")
    set_status(env, models.Group, gid, "updating")
    env.update_group(CTX, gid, add_volumes=",".join(vids))
    assert get(env, models.Group, gid).status == "available"

    gsid, sids = make_group_snapshot(env, gid)
    env.create_group_snapshot(CTX, gsid)
    assert all(os.path.exists(os.path.join(directory, "snapshot-%s" % s)) for s in sids)

    by_volume = {get(env, models.Snapshot, s).volume_id: s for s in sids}
    new_gid, new_vids = _target(env, [by_volume[v] for v in vids], "snapshot_id", (1, 2))
    env.create_group_from_src(CTX, new_gid, group_snapshot_id=gsid)
    assert statuses(env, models.Volume, new_vids) == ["available", "available"]
    with open(os.path.join(directory, "volume-%s" % new_vids[0]), "rb") as f:
        assert f.read(10) == b"group data"

    set_status(env, models.GroupSnapshot, gsid, "deleting")
    env.delete_group_snapshot(CTX, gsid)
    for group_id in (gid, new_gid):
        set_status(env, models.Group, group_id, "deleting")
        env.delete_group(CTX, group_id)
    leftover = [n for n in os.listdir(directory) if n.startswith(("volume-", "snapshot-"))]
    assert leftover == []
    assert in_use(env) == {"volumes": 0, "snapshots": 0, "gigabytes": 0, "groups": 0}
    assert env.capacity.snapshot() == {}
    assert_settled(env)
