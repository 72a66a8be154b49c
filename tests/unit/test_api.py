"""Client library: every operation's happy path, and every bad input -> a typed error with
NOTHING written (rows, usages and reservations compared before/after). SQLite, with the real
RPC client classes whose transport is replaced by a recording list."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from blockmgr import api
from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr import quota as bm_quota
from blockmgr import services
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.scheduler import rpcapi as scheduler_rpcapi
from blockmgr.volume import rpcapi as volume_rpcapi

A = bm_context.RequestContext(project_id="pA", user_id="uA")
B = bm_context.RequestContext(project_id="pB", user_id="uB")
ADMIN = bm_context.RequestContext(project_id="admin", is_admin=True)
HOST = "n1@lvm#pool"


class RecordingClient:
    def __init__(self, log, fanout=False):
        self.log, self.fanout, self.fail = log, fanout, None

    def cast(self, ctxt, method, **kwargs):
        if self.fail is not None:
            raise self.fail
        REQUEST_IDS.append(kwargs.pop("request_id", None))
        self.log.append((method, kwargs))


class RecordingSchedulerAPI(scheduler_rpcapi.SchedulerAPI):
    def __init__(self):   # the real methods, no transport
        self.sent = []
        self._client = RecordingClient(self.sent)
        self._fanout = RecordingClient(self.sent, fanout=True)


class RecordingVolumeAPI(volume_rpcapi.VolumeAPI):
    def __init__(self):
        super().__init__(transport=None)
        self.sent = []
        self.fail = None

    def _cast(self, ctxt, host, method, **kwargs):
        if self.fail is not None:
            raise self.fail
        REQUEST_IDS.append(kwargs.pop("request_id", None))
        self.sent.append((method, host, kwargs))

    def _call(self, ctxt, host, method, **kwargs):
        self.sent.append((method, host, kwargs))
        return {"driver_volume_type": "local", "data": {"device_path": "/dev/x"}}


#: The ledger request id each recorded cast carried (None: none), in cast order.
REQUEST_IDS: list = []


@pytest.fixture
def env(conf, sqlite_database):
    conf.set_override("per_volume_gigabytes", 100, group="quota")
    db = sqlite_database
    quota = bm_quota.QuotaEngine(db, conf)
    sched, vol = RecordingSchedulerAPI(), RecordingVolumeAPI()
    client = api.Client(conf, db, quota, scheduler_rpcapi=sched, volume_rpcapi=vol)
    with db.writer() as session:
        services.heartbeat(session, services.register(session, "n1@lvm",
                                                      services.VOLUME_BINARY, "blockmgr-volume"))
    client.db, client.quota, client.sched, client.vol, client.conf = db, quota, sched, vol, conf
    return client


def state_of(db) -> dict:
    """Everything the library may write: row counts by status, usages, live reservations."""
    out = {}
    with db.reader() as session:
        for model in (models.Volume, models.Snapshot, models.Group, models.GroupSnapshot):
            out[model.__tablename__] = sorted(session.execute(
                sa.select(model.id, model.status, model.deleted)).all())
        out["usages"] = sorted(session.execute(sa.select(
            models.QuotaUsage.project_id, models.QuotaUsage.resource,
            models.QuotaUsage.in_use, models.QuotaUsage.reserved)).all())
        out["reservations"] = sorted(session.execute(sa.select(
            models.Reservation.uuid, models.Reservation.deleted)).all())
    return out


def usage(env, project="pA"):
    return {r: (u["in_use"], u["reserved"]) for r, u in env.quota.get_usages(project).items()}


def place(env, volume_id, host=HOST, status="available"):
    """What scheduler + worker would do: put the volume on a host and finish it."""
    with env.db.writer() as session:
        repository.update(session, repository.get(session, models.Volume, volume_id),
                          host=host, status=status)


def available_volume(env, size=10, ctx=A):
    vid = env.volumes.create_volume(ctx, size)["id"]
    place(env, vid)
    return vid


def available_snapshot(env, volume_id, ctx=A):
    sid = env.snapshots.create_snapshot(ctx, volume_id)["id"]
    with env.db.writer() as session:
        repository.update(session, repository.get(session, models.Snapshot, sid),
                          status="available")
    return sid


# --- create ---------------------------------------------------------------------------------

def test_create_raw_writes_row_and_quota_together_and_casts_scheduler(env):
    row = env.volumes.create_volume(A, 10, name="data")
    assert row["status"] == "creating" and row["size"] == 10 and row["project_id"] == "pA"
    assert usage(env)["volumes"] == (1, 0) and usage(env)["gigabytes"] == (10, 0)
    (method, kwargs), = env.sched.sent
    assert method == "create_volume" and kwargs["volume_id"] == row["id"]
    assert kwargs["request_spec"]["size"] == 10
    assert "resource_backend" not in kwargs["request_spec"]


def test_create_from_snapshot_and_source_lands_on_source_backend(env):
    vid = available_volume(env, 10)
    sid = available_snapshot(env, vid)
    env.sched.sent.clear()
    from_snap = env.volumes.create_volume(A, snapshot_id=sid)
    assert from_snap["size"] == 10 and from_snap["snapshot_id"] == sid
    clone = env.volumes.create_volume(A, 20, source_volid=vid)
    specs = [kw["request_spec"] for _m, kw in env.sched.sent]
    assert specs[0]["resource_backend"] == HOST and specs[0]["snapshot_id"] == sid
    assert specs[1]["resource_backend"] == HOST and specs[1]["source_volid"] == vid
    assert clone["size"] == 20
    assert usage(env)["gigabytes"] == (10 + 10 + 10 + 20, 0)


@pytest.mark.parametrize("args,kwargs,error", [
    ((0,), {}, exception.InvalidInput),
    ((-1,), {}, exception.InvalidInput),
    ((1.5,), {}, exception.InvalidInput),
    (("10",), {}, exception.InvalidInput),
    ((True,), {}, exception.InvalidInput),
    ((None,), {}, exception.InvalidInput),
    ((101,), {}, exception.VolumeSizeExceedsLimit),
    ((1,), {"name": "x" * 300}, exception.InvalidInput),
    ((1,), {"volume_type": "gold"}, exception.InvalidInput),
    ((1,), {"snapshot_id": "0" * 36}, exception.SnapshotNotFound),
    ((1,), {"source_volid": "0" * 36}, exception.VolumeNotFound),
    ((1,), {"group_id": "0" * 36}, exception.GroupNotFound),
])
def test_create_bad_input_writes_nothing(env, args, kwargs, error):
    available_volume(env)   # some state to keep
    before = state_of(env.db)
    with pytest.raises(error):
        env.volumes.create_volume(A, *args, **kwargs)
    assert state_of(env.db) == before


def test_create_over_quota_and_bad_sources_write_nothing(env):
    vid = available_volume(env, 10)
    sid = available_snapshot(env, vid)
    env.quota.set_limit("pA", "volumes", 1)
    before = state_of(env.db)
    with pytest.raises(exception.OverQuota):
        env.volumes.create_volume(A, 1)
    env.quota.set_limit("pA", "volumes", 10)
    before = state_of(env.db)
    for call, error in [
        (lambda: env.volumes.create_volume(A, 5, snapshot_id=sid), exception.InvalidInput),
        (lambda: env.volumes.create_volume(A, 5, source_volid=vid), exception.InvalidInput),
        (lambda: env.volumes.create_volume(A, 10, snapshot_id=sid, source_volid=vid),
         exception.InvalidInput),
        (lambda: env.volumes.create_volume(B, snapshot_id=sid), exception.SnapshotNotFound),
        (lambda: env.volumes.create_volume(B, source_volid=vid), exception.VolumeNotFound),
        (lambda: env.volumes.create_volume("not a context", 1), exception.InvalidInput),
        (lambda: env.volumes.create_volume(bm_context.RequestContext(), 1),
         exception.InvalidInput),
    ]:
        with pytest.raises(error):
            call()
        assert state_of(env.db) == before
    with env.db.writer() as session:
        repository.transition(session, models.Snapshot, sid, "deleting")
    with pytest.raises(exception.InvalidSnapshot):
        env.volumes.create_volume(A, snapshot_id=sid)


def _requests(db) -> list:
    with db.reader() as session:
        return session.execute(sa.select(models.Request).order_by(
            models.Request.created_at)).scalars().all()


def test_create_records_the_request_with_the_row_and_casts_its_id(env):
    row = env.volumes.create_volume(A, 3)
    (request,) = _requests(env.db)
    assert (request.kind, request.resource_id, request.action, request.target,
            request.state) == ("volume", row["id"], "create_volume", "scheduler", "pending")
    assert json.loads(request.arguments)["volume_id"] == row["id"]
    assert REQUEST_IDS[-1] == request.id


def test_a_failed_cast_loses_nothing_the_request_stays_pending(env):
    """The broker is down: the volume is accepted all the same (``creating``) and its
    request waits, pending, for the scheduler's next sweep."""
    env.sched._client.fail = RuntimeError("no broker")
    row = env.volumes.create_volume(A, 3)
    assert row["status"] == "creating"
    (request,) = _requests(env.db)
    assert request.state == "pending" and request.resource_id == row["id"]


def test_a_refused_request_records_nothing(env):
    with pytest.raises(exception.InvalidInput):
        env.volumes.create_volume(A, 0)
    assert _requests(env.db) == []


# --- project isolation ----------------------------------------------------------------------

def test_other_project_sees_not_found_and_admin_sees_all(env):
    vid = available_volume(env)
    sid = available_snapshot(env, vid)
    gid = env.groups.create_group(A)["id"]
    before = state_of(env.db)
    for call, error in [
        (lambda: env.volumes.get_volume(B, vid), exception.VolumeNotFound),
        (lambda: env.volumes.delete_volume(B, vid), exception.VolumeNotFound),
        (lambda: env.volumes.extend_volume(B, vid, 20), exception.VolumeNotFound),
        (lambda: env.volumes.unmanage(B, vid), exception.VolumeNotFound),
        (lambda: env.volumes.initialize_connection(B, vid, {}), exception.VolumeNotFound),
        (lambda: env.snapshots.create_snapshot(B, vid), exception.VolumeNotFound),
        (lambda: env.snapshots.delete_snapshot(B, sid), exception.SnapshotNotFound),
        (lambda: env.snapshots.manage_existing_snapshot(B, vid, {"source-name": "s"}),
         exception.VolumeNotFound),
        (lambda: env.groups.delete_group(B, gid), exception.GroupNotFound),
        (lambda: env.groups.create_group_snapshot(B, gid), exception.GroupNotFound),
    ]:
        with pytest.raises(error):
            call()
    assert state_of(env.db) == before
    assert env.volumes.get_volume(ADMIN, vid)["id"] == vid


# --- delete / unmanage ----------------------------------------------------------------------

def test_delete_unplaced_volume_removes_it_and_returns_quota_at_once(env):
    vid = env.volumes.create_volume(A, 7)["id"]
    row = env.volumes.delete_volume(A, vid)
    assert row["status"] == "deleted" and row["deleted"]
    assert usage(env)["volumes"] == (0, 0) and usage(env)["gigabytes"] == (0, 0)
    assert env.vol.sent == []


def test_delete_placed_volume_moves_to_deleting_and_casts_its_backend(env):
    vid = available_volume(env)
    sid = available_snapshot(env, vid)
    before = state_of(env.db)
    with pytest.raises(exception.InvalidVolume):      # has a snapshot
        env.volumes.delete_volume(A, vid)
    with pytest.raises(exception.InvalidInput):
        env.volumes.delete_volume(A, vid, cascade="yes")
    assert state_of(env.db) == before
    row = env.volumes.delete_volume(A, vid, cascade=True)
    assert row["status"] == "deleting"
    assert env.vol.sent[-1] == ("delete_volume", HOST,
                                {"volume_id": vid, "unmanage_only": False, "cascade": True})
    assert env.snapshots.get_snapshot(A, sid)["status"] == "deleting"
    before = state_of(env.db)
    with pytest.raises(exception.InvalidVolume):      # deleting already
        env.volumes.delete_volume(A, vid)
    assert state_of(env.db) == before


def test_delete_refuses_attached_and_grouped_volumes(env):
    attached = available_volume(env)
    with env.db.writer() as session:
        repository.update(session, repository.get(session, models.Volume, attached),
                          status="in-use", attach_status="attached")
    before = state_of(env.db)
    with pytest.raises(exception.VolumeAttached):
        env.volumes.delete_volume(A, attached)
    with pytest.raises(exception.InvalidVolume):
        env.volumes.unmanage(A, attached)
    assert state_of(env.db) == before


def test_failed_import_deletes_as_error_managing_deleting(env):
    vid = env.volumes.manage_existing(A, "n1@lvm", {"source-name": "lv1"})["id"]
    with env.db.writer() as session:
        repository.transition(session, models.Volume, vid, "error_managing")
    assert env.volumes.delete_volume(A, vid)["status"] == "error_managing_deleting"


def test_unmanage_casts_delete_with_unmanage_only(env):
    vid = available_volume(env)
    assert env.volumes.unmanage(A, vid)["status"] == "unmanaging"
    assert env.vol.sent[-1] == ("delete_volume", HOST,
                                {"volume_id": vid, "unmanage_only": True, "cascade": False})


def test_volume_cast_failure_leaves_the_delete_pending_for_the_backend(env):
    vid = available_volume(env)
    env.vol.fail = RuntimeError("broker down")
    assert env.volumes.delete_volume(A, vid)["status"] == "deleting"
    request = _requests(env.db)[-1]
    assert (request.action, request.target, request.state) == ("delete_volume", "n1@lvm",
                                                                "pending")


# --- extend ---------------------------------------------------------------------------------

def test_extend_reserves_delta_with_the_status_change_and_casts_scheduler(env):
    vid = available_volume(env, 10)
    row = env.volumes.extend_volume(A, vid, 15)
    assert row["status"] == "extending" and row["previous_status"] == "available"
    assert usage(env)["gigabytes"] == (10, 5)
    method, kwargs = env.sched.sent[-1]
    assert method == "extend_volume" and kwargs["new_size"] == 15
    assert len(kwargs["reservations"]) == 2   # gigabytes and gigabytes___DEFAULT__


@pytest.mark.parametrize("new_size,error", [
    (10, exception.InvalidInput), (5, exception.InvalidInput), (0, exception.InvalidInput),
    (12.0, exception.InvalidInput), (False, exception.InvalidInput),
    (101, exception.VolumeSizeExceedsLimit)])
def test_extend_bad_size_writes_nothing(env, new_size, error):
    vid = available_volume(env, 10)
    before = state_of(env.db)
    with pytest.raises(error):
        env.volumes.extend_volume(A, vid, new_size)
    assert state_of(env.db) == before


def test_extend_over_quota_and_wrong_status_write_nothing(env):
    vid = available_volume(env, 10)
    env.quota.set_limit("pA", "gigabytes", 12)
    before = state_of(env.db)
    with pytest.raises(exception.OverQuota):
        env.volumes.extend_volume(A, vid, 20)
    assert state_of(env.db) == before
    creating = env.volumes.create_volume(A, 1)["id"]
    before = state_of(env.db)
    with pytest.raises(exception.InvalidVolume):
        env.volumes.extend_volume(A, creating, 2)
    assert state_of(env.db) == before


# --- manage ---------------------------------------------------------------------------------

def test_manage_existing_counts_the_volume_and_casts_scheduler(env):
    row = env.volumes.manage_existing(A, "n1@lvm", {"source-name": "lv1"}, name="imp")
    assert (row["status"], row["size"], row["host"]) == ("managing", 0, "n1@lvm")
    assert usage(env)["volumes"] == (1, 0) and usage(env)["gigabytes"] == (0, 0)
    assert env.sched.sent[-1] == ("manage_existing", {
        "volume_id": row["id"], "ref": {"source-name": "lv1"}, "host": "n1@lvm"})


@pytest.mark.parametrize("host,ref,error", [
    ("n1@lvm", {}, exception.ManageExistingInvalidReference),
    ("n1@lvm", {"source-name": ""}, exception.ManageExistingInvalidReference),
    ("n1@lvm", {"name": "lv1"}, exception.ManageExistingInvalidReference),
    ("n1@lvm", "lv1", exception.ManageExistingInvalidReference),
    ("n1", {"source-name": "lv1"}, exception.InvalidInput),
    ("n9@nope", {"source-name": "lv1"}, exception.ServiceNotFound),
])
def test_manage_bad_input_writes_nothing(env, host, ref, error):
    before = state_of(env.db)
    with pytest.raises(error):
        env.volumes.manage_existing(A, host, ref)
    assert state_of(env.db) == before


def test_manage_refuses_a_managed_volume_name(env):
    vid = available_volume(env)
    before = state_of(env.db)
    with pytest.raises(exception.ManageExistingAlreadyManaged):
        env.volumes.manage_existing(A, "n1@lvm", {"source-name": "volume-%s" % vid})
    assert state_of(env.db) == before


def test_manage_snapshot_checks_ref_service_and_counts_quota(env):
    vid = available_volume(env, 8)
    before = state_of(env.db)
    with pytest.raises(exception.ManageExistingInvalidReference):
        env.snapshots.manage_existing_snapshot(A, vid, {"source-nme": "s"})
    with env.db.writer() as session:
        session.execute(sa.update(models.Service).values(heartbeat_at=None))
    with pytest.raises(exception.BackendUnavailable):
        env.snapshots.manage_existing_snapshot(A, vid, {"source-name": "s"})
    assert state_of(env.db) == before
    with env.db.writer() as session:
        session.execute(sa.update(models.Service).values(heartbeat_at=models.utcnow()))
    row = env.snapshots.manage_existing_snapshot(A, vid, {"source-name": "s"})
    assert row["status"] == "creating" and row["volume_size"] == 8
    assert usage(env)["snapshots"] == (1, 0) and usage(env)["gigabytes"] == (16, 0)
    assert env.sched.sent[-1] == ("manage_existing_snapshot", {
        "snapshot_id": row["id"], "ref": {"source-name": "s"}, "host": HOST})


# --- snapshots ------------------------------------------------------------------------------

def test_snapshot_create_delete_unmanage(env):
    vid = available_volume(env, 4)
    row = env.snapshots.create_snapshot(A, vid, name="s1")
    assert env.vol.sent[-1] == ("create_snapshot", HOST, {"snapshot_id": row["id"]})
    assert usage(env)["snapshots"] == (1, 0) and usage(env)["gigabytes"] == (8, 0)
    before = state_of(env.db)
    with pytest.raises(exception.InvalidSnapshot):    # still creating
        env.snapshots.delete_snapshot(A, row["id"])
    with pytest.raises(exception.InvalidInput):
        env.snapshots.create_snapshot(A, vid, force="yes")
    assert state_of(env.db) == before
    sid = available_snapshot(env, vid)
    assert env.snapshots.unmanage_snapshot(A, sid)["status"] == "unmanaging"
    assert env.vol.sent[-1] == ("delete_snapshot", HOST,
                                {"snapshot_id": sid, "unmanage_only": True})


def _failed_snapshot_manage(env, vid):
    sid = env.snapshots.manage_existing_snapshot(A, vid, {"source-name": "s"})["id"]
    with env.db.writer() as session:
        repository.transition(session, models.Snapshot, sid, "error_managing")
    return sid


def test_failed_snapshot_manage_deletes_as_error_managing_deleting(env):
    """Its object is the user's: the worker must only unmanage it."""
    vid = available_volume(env, 4)
    sid = _failed_snapshot_manage(env, vid)
    assert env.snapshots.delete_snapshot(A, sid)["status"] == "error_managing_deleting"
    assert env.vol.sent[-1] == ("delete_snapshot", HOST,
                                {"snapshot_id": sid, "unmanage_only": False})
    with pytest.raises(exception.InvalidSnapshot):     # in flight: not again
        env.snapshots.delete_snapshot(A, sid)
    with pytest.raises(exception.InvalidSnapshot):     # unmanage is for available ones
        env.snapshots.unmanage_snapshot(A, _failed_snapshot_manage(env, vid))


@pytest.mark.parametrize("status", ["error_managing", "error_managing_deleting"])
def test_forced_delete_of_a_failed_snapshot_manage_still_only_unmanages(env, status):
    vid = available_volume(env, 4)
    sid = _failed_snapshot_manage(env, vid)
    if status == "error_managing_deleting":
        env.snapshots.delete_snapshot(A, sid)
    row = env.snapshots.force_delete_snapshot(ADMIN, sid)
    assert row["status"] == "error_managing_deleting"


def test_snapshot_takes_the_volume_type_of_its_volume(env):
    vid = available_volume(env, 4)
    with env.db.writer() as session:
        repository.update(session, repository.get(session, models.Volume, vid),
                          volume_type_id="t" * 36)
    assert env.snapshots.create_snapshot(A, vid)["volume_type_id"] == "t" * 36
    assert env.snapshots.manage_existing_snapshot(
        A, vid, {"source-name": "s"})["volume_type_id"] == "t" * 36


def test_snapshot_of_in_use_volume_needs_force(env):
    vid = available_volume(env)
    place(env, vid, status="in-use")
    before = state_of(env.db)
    with pytest.raises(exception.InvalidVolume):
        env.snapshots.create_snapshot(A, vid)
    assert state_of(env.db) == before
    assert env.snapshots.create_snapshot(A, vid, force=True)["status"] == "creating"


# --- groups ---------------------------------------------------------------------------------

def placed_group(env, ctx=A):
    gid = env.groups.create_group(ctx, name="g", volume_types=[
        {"id": "t" * 36, "extra_specs": {"volume_backend_name": "lvm"}}])["id"]
    with env.db.writer() as session:
        repository.update(session, repository.get(session, models.Group, gid),
                          host="n1@lvm", status="available")
    return gid


def test_group_lifecycle(env):
    gid = placed_group(env)
    method, kwargs = env.sched.sent[-1]
    assert method == "create_group" and kwargs["request_spec"]["volume_types"][0][
        "extra_specs"] == {"volume_backend_name": "lvm"}
    assert usage(env)["groups"] == (1, 0)
    v1, v2 = available_volume(env, 2), available_volume(env, 3)
    env.groups.update_group(A, gid, add_volumes=[v1, v2])
    assert env.vol.sent[-1] == ("update_group", "n1@lvm", {
        "group_id": gid, "add_volumes": [v1, v2], "remove_volumes": []})
    with env.db.writer() as session:
        repository.update(session, repository.get(session, models.Group, gid),
                          status="available")
        for v in (v1, v2):
            repository.update(session, repository.get(session, models.Volume, v), group_id=gid)
    gsnap = env.groups.create_group_snapshot(A, gid, name="gs")
    assert env.vol.sent[-1] == ("create_group_snapshot", "n1@lvm",
                                {"group_snapshot_id": gsnap["id"]})
    assert usage(env)["snapshots"] == (2, 0) and usage(env)["gigabytes"] == (10, 0)
    with env.db.writer() as session:
        repository.transition(session, models.GroupSnapshot, gsnap["id"], "available")
        for snap in repository.snapshots_of_group_snapshot(session, gsnap["id"]):
            repository.update(session, snap, status="available")
    new = env.groups.create_group_from_src(A, group_snapshot_id=gsnap["id"])
    assert new["host"] == "n1@lvm" and new["status"] == "creating"
    assert env.vol.sent[-1] == ("create_group_from_src", "n1@lvm", {
        "group_id": new["id"], "group_snapshot_id": gsnap["id"], "source_group_id": None})
    assert usage(env)["groups"] == (2, 0) and usage(env)["volumes"] == (4, 0)
    assert usage(env)["gigabytes"] == (15, 0)
    before = state_of(env.db)
    with pytest.raises(exception.InvalidGroup):    # has volumes
        env.groups.delete_group(A, gid)
    with pytest.raises(exception.InvalidGroup):    # has a group snapshot
        env.groups.delete_group(A, gid, delete_volumes=True)
    assert state_of(env.db) == before
    assert env.groups.delete_group_snapshot(A, gsnap["id"])["status"] == "deleting"
    with env.db.writer() as session:
        for snap in repository.snapshots_of_group_snapshot(session, gsnap["id"]):
            repository.update(session, snap, status="deleting")
            repository.soft_delete(session, snap)
        repository.soft_delete(session, repository.get(session, models.GroupSnapshot,
                                                       gsnap["id"]))
    assert env.groups.delete_group(A, gid, delete_volumes=True)["status"] == "deleting"
    assert env.vol.sent[-1] == ("delete_group", "n1@lvm", {"group_id": gid})


def test_group_bad_input_writes_nothing(env):
    gid = placed_group(env)
    other = available_volume(env)
    elsewhere = available_volume(env)
    place(env, elsewhere, host="n2@lvm#pool")
    theirs = available_volume(env, ctx=B)
    before = state_of(env.db)
    for call, error in [
        (lambda: env.groups.update_group(A, gid), exception.InvalidInput),
        (lambda: env.groups.update_group(A, gid, add_volumes=[other], remove_volumes=[other]),
         exception.InvalidInput),
        (lambda: env.groups.update_group(A, gid, add_volumes=[elsewhere]),
         exception.InvalidVolume),
        (lambda: env.groups.update_group(A, gid, add_volumes=[theirs]),
         exception.VolumeNotFound),
        (lambda: env.groups.update_group(A, gid, remove_volumes=[other]),
         exception.InvalidVolume),
        (lambda: env.groups.update_group(A, gid, add_volumes="x"), exception.InvalidInput),
        (lambda: env.groups.create_group_snapshot(A, gid), exception.InvalidGroup),   # empty
        (lambda: env.groups.create_group_from_src(A), exception.InvalidInput),
        (lambda: env.groups.create_group_from_src(A, source_group_id=gid,
                                                  group_snapshot_id=gid),
         exception.InvalidInput),
        (lambda: env.groups.create_group_from_src(A, group_snapshot_id="0" * 36),
         exception.GroupSnapshotNotFound),
        (lambda: env.groups.create_group(A, volume_types="gold"), exception.InvalidInput),
        (lambda: env.groups.delete_group_snapshot(A, "0" * 36),
         exception.GroupSnapshotNotFound),
    ]:
        with pytest.raises(error):
            call()
        assert state_of(env.db) == before


def test_unplaced_group_is_deleted_at_once_with_its_quota(env):
    gid = env.groups.create_group(A)["id"]
    before = state_of(env.db)
    with pytest.raises(exception.InvalidGroup):    # still being scheduled
        env.groups.delete_group(A, gid)
    assert state_of(env.db) == before
    with env.db.writer() as session:               # what NoValidBackend leaves
        repository.transition(session, models.Group, gid, "error")
    assert env.groups.delete_group(A, gid)["deleted"] is True
    assert usage(env)["groups"] == (0, 0)


# --- calls ----------------------------------------------------------------------------------

def test_connections_capabilities_and_manageable_listings_are_calls(env):
    vid = available_volume(env)
    # Connections are recorded on attachments (tests/unit/test_api_attachments.py); a
    # terminate for a connector nothing recorded still reaches the backend.
    env.volumes.terminate_connection(A, vid, {"host": "client"}, force=True)
    info = env.volumes.initialize_connection(A, vid, {"host": "client"})
    assert info["driver_volume_type"] == "local"
    assert env.vol.sent[-2][:2] == ("terminate_connection", HOST)
    assert env.vol.sent[-2][2] == {"volume_id": vid, "connector": {"host": "client"},
                                   "force": True}
    method, host, kwargs = env.vol.sent[-1]
    assert (method, host, kwargs["volume_id"]) == ("connect_attachment", HOST, vid)
    env.volumes.get_capabilities(ADMIN, "n1@lvm")
    env.volumes.get_manageable_volumes(ADMIN, "n1@lvm", limit=5, sort_keys=["size"],
                                       sort_dirs=["desc"])
    env.snapshots.get_manageable_snapshots(ADMIN, "n1@lvm")
    assert [m for m, _h, _k in env.vol.sent[-3:]] == [
        "get_capabilities", "get_manageable_volumes", "get_manageable_snapshots"]
    assert env.vol.sent[-2][2]["limit"] == 5
    n = len(env.vol.sent)
    for call in [
        lambda: env.volumes.get_manageable_volumes(ADMIN, "n1@lvm", limit=-1),
        lambda: env.volumes.get_manageable_volumes(ADMIN, "n1@lvm", sort_keys=["name"]),
        lambda: env.volumes.get_manageable_volumes(ADMIN, "n1@lvm", sort_dirs=["up"]),
        lambda: env.volumes.get_capabilities(ADMIN, "nohost"),
        lambda: env.volumes.initialize_connection(A, vid, "iqn"),
    ]:
        with pytest.raises(exception.InvalidInput):
            call()
    assert len(env.vol.sent) == n
    creating = env.volumes.create_volume(A, 1)["id"]
    with pytest.raises(exception.InvalidVolume):
        env.volumes.initialize_connection(A, creating, {})
