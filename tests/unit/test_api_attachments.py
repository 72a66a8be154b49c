"""Attachments in the client library: every status transition of the attachments API and
of the legacy volume actions, and every refusal of a destructive operation while a volume is
held. SQLite, with recording RPC doubles; the volume worker's connect call is played by
:class:`ConnectingVolumeAPI`, which records the connection as the worker's flow does."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from blockmgr import api
from blockmgr import exception
from blockmgr import quota as bm_quota
from blockmgr import services
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.db import requests as db_requests
from blockmgr.flows import attachments as rules
from tests.unit.test_api import ADMIN, A, B, HOST, RecordingSchedulerAPI, RecordingVolumeAPI
from tests.unit.test_api import available_volume, state_of

INSTANCE = "0e6a1d2c-5b34-4c1e-9e45-6f0d7c1b2a33"
CONNECTOR = {"host": "client1", "initiator": "iqn.client1"}


class ConnectingVolumeAPI(RecordingVolumeAPI):
    """The worker's connect flow, minus the driver: the attachment ``attaching`` with its
    connector and connection info, the volume settled."""

    def __init__(self, db):
        super().__init__()
        self.db = db
        self.fail_connect = None
        self.capabilities = {"online_extend_support": False}

    def _call(self, ctxt, host, method, **kwargs):
        self.sent.append((method, host, kwargs))
        if method == "get_capabilities":
            return dict(self.capabilities)
        if method != "connect_attachment":
            return None
        if self.fail_connect is not None:
            raise self.fail_connect
        info = {"driver_volume_type": "local",
                "data": {"device_path": "/dev/loop7", "volume_id": kwargs["volume_id"]}}
        with self.db.writer() as session:
            attachment = rules.get_attachment(session, kwargs["attachment_id"])
            repository.update(session, attachment, attach_status="attaching",
                              connector=json.dumps(kwargs["connector"]),
                              connection_info=json.dumps(info),
                              attached_host=kwargs["connector"].get("host"))
            rules.settle_volume(session, kwargs["volume_id"])
        return info


@pytest.fixture
def env(conf, sqlite_database):
    conf.set_override("per_volume_gigabytes", 100, group="quota")
    db = sqlite_database
    quota = bm_quota.QuotaEngine(db, conf)
    sched, vol = RecordingSchedulerAPI(), ConnectingVolumeAPI(db)
    client = api.Client(conf, db, quota, scheduler_rpcapi=sched, volume_rpcapi=vol)
    with db.writer() as session:
        services.heartbeat(session, services.register(session, "n1@lvm",
                                                      services.VOLUME_BINARY, "blockmgr-volume"))
    client.db, client.quota, client.sched, client.vol, client.conf = db, quota, sched, vol, conf
    return client


def volume(env, vid) -> dict:
    return env.volumes.get_volume(ADMIN, vid)


def statuses(env, vid) -> tuple[str, str]:
    row = volume(env, vid)
    return row["status"], row["attach_status"]


def open_requests(env, vid) -> list:
    with env.db.reader() as session:
        return [(r.action, r.state, json.loads(r.arguments)) for r in session.scalars(
            sa.select(models.Request).where(models.Request.resource_id == vid))
            if r.state in db_requests.OPEN and r.action != "create_volume"]


def run_detach(env, vid, attachment_id):
    """What the worker's detach flow does once the driver calls succeeded."""
    with env.db.writer() as session:
        rules.finish_detach(session, rules.get_attachment(session, attachment_id))


# --- attachments API ------------------------------------------------------------------------

def test_attachment_lifecycle_reserved_attaching_in_use_detaching_available(env):
    vid = available_volume(env)
    att = env.attachments.create(A, vid, instance_uuid=INSTANCE)
    assert att["attach_status"] == "reserved" and att["instance_uuid"] == INSTANCE
    assert statuses(env, vid) == ("reserved", "detached")

    att = env.attachments.update(A, att["id"], CONNECTOR)
    assert att["attach_status"] == "attaching"
    assert att["connection_info"]["data"]["device_path"] == "/dev/loop7"
    assert statuses(env, vid) == ("attaching", "attaching")
    assert env.vol.sent[-1][0] == "connect_attachment"
    assert env.vol.sent[-1][1] == HOST

    att = env.attachments.complete(A, att["id"])
    assert att["attach_status"] == "attached" and att["attach_time"]
    assert statuses(env, vid) == ("in-use", "attached")

    remaining = env.attachments.delete(A, att["id"])
    assert remaining == []
    assert statuses(env, vid) == ("detaching", "detaching")
    assert env.attachments.get(A, att["id"])["attach_status"] == "detaching"
    (action, state, args), = open_requests(env, vid)
    assert action == "detach_volume" and args == {"volume_id": vid,
                                                  "attachment_id": att["id"],
                                                  "force": False}
    assert env.vol.sent[-1][0] == "detach_volume"

    run_detach(env, vid, att["id"])
    assert statuses(env, vid) == ("available", "detached")
    with pytest.raises(exception.AttachmentNotFound):
        env.attachments.get(A, att["id"])


def test_create_with_connector_connects_at_once(env):
    vid = available_volume(env)
    att = env.attachments.create(A, vid, connector=CONNECTOR, mode="ro")
    assert att["attach_status"] == "attaching" and att["attach_mode"] == "ro"
    assert att["connector"] == CONNECTOR
    assert statuses(env, vid) == ("attaching", "attaching")


def test_a_reserved_attachment_is_deleted_at_once_without_the_worker(env):
    vid = available_volume(env)
    att = env.attachments.create(A, vid)
    sent = len(env.vol.sent)
    assert env.attachments.delete(A, att["id"]) == []
    assert statuses(env, vid) == ("available", "detached")
    assert len(env.vol.sent) == sent and open_requests(env, vid) == []


def test_failed_connect_on_create_gives_the_hold_back(env):
    vid = available_volume(env)
    env.vol.fail_connect = exception.VolumeBackendAPIException(reason="no loop device")
    with pytest.raises(exception.VolumeBackendAPIException):
        env.attachments.create(A, vid, connector=CONNECTOR)
    assert statuses(env, vid) == ("available", "detached")
    assert env.attachments.list(A) == []


def test_second_attachment_refused_unless_multiattach(env):
    vid = available_volume(env)
    env.attachments.create(A, vid)
    before = state_of(env.db)
    with pytest.raises(exception.InvalidVolume, match="not multiattach"):
        env.attachments.create(A, vid)
    assert state_of(env.db) == before

    multi = available_volume(env)
    with env.db.writer() as session:
        repository.update(session, repository.get(session, models.Volume, multi),
                          multiattach=True)
    first = env.attachments.create(A, multi, connector=CONNECTOR)
    env.attachments.complete(A, first["id"])
    second = env.attachments.create(A, multi)
    assert statuses(env, multi) == ("in-use", "attached")
    assert second["attach_status"] == "reserved"
    # Detaching the first leaves the volume held by the second.
    env.attachments.delete(A, first["id"])
    run_detach(env, multi, first["id"])
    assert statuses(env, multi) == ("reserved", "detached")
    env.attachments.delete(A, second["id"])
    assert statuses(env, multi) == ("available", "detached")


def test_multiattach_comes_from_the_volume_type(env):
    vid = env.volumes.create_volume(A, 1, volume_type={
        "name": "shared", "extra_specs": {"multiattach": "<is> True"}})["id"]
    plain = env.volumes.create_volume(A, 1, volume_type={"name": "x", "extra_specs": {}})["id"]
    assert volume(env, vid)["multiattach"] is True
    assert volume(env, plain)["multiattach"] is False


def test_complete_needs_a_connection_and_listing_filters(env):
    vid = available_volume(env)
    att = env.attachments.create(A, vid, instance_uuid=INSTANCE)
    with pytest.raises(exception.InvalidAttachment):
        env.attachments.complete(A, att["id"])
    assert [a["id"] for a in env.attachments.list(A, filters={"volume_id": vid})] == [att["id"]]
    assert env.attachments.list(A, filters={"instance_id": INSTANCE})[0]["id"] == att["id"]
    assert env.attachments.list(A, filters={"status": "attached"}) == []
    assert env.attachments.list(B) == []
    with pytest.raises(exception.AttachmentNotFound):
        env.attachments.get(B, att["id"])
    with pytest.raises(exception.InvalidInput):
        env.attachments.list(A, filters={"host": "x"})


@pytest.mark.parametrize("kwargs", [{"instance_uuid": "not-a-uuid"}, {"mode": "rx"},
                                    {"connector": "iqn"}])
def test_bad_attachment_input_writes_nothing(env, kwargs):
    vid = available_volume(env)
    before = state_of(env.db)
    with pytest.raises(exception.InvalidInput):
        env.attachments.create(A, vid, **kwargs)
    assert state_of(env.db) == before
    assert env.attachments.list(A) == []


def test_attach_refused_for_volumes_not_available(env):
    vid = env.volumes.create_volume(A, 1)["id"]   # creating, not placed
    with pytest.raises(exception.InvalidVolume):
        env.attachments.create(A, vid)
    err = available_volume(env)
    with env.db.writer() as session:
        repository.transition(session, models.Volume, err, "error")
    with pytest.raises(exception.InvalidVolume, match="must be available"):
        env.attachments.create(A, err)


# --- legacy actions ------------------------------------------------------------------------

def test_legacy_reserve_initialize_attach_begin_detaching_detach(env):
    vid = available_volume(env)
    env.attachments.reserve(A, vid)
    assert statuses(env, vid) == ("attaching", "detached")
    info = env.volumes.initialize_connection(A, vid, CONNECTOR)
    assert info["data"]["device_path"] == "/dev/loop7"
    assert len(env.attachments.list(A)) == 1        # the reserve's hold was connected
    att = env.attachments.attach(A, vid, instance_uuid=INSTANCE, mountpoint="/dev/vdb")
    assert att["attach_status"] == "attached" and att["mountpoint"] == "/dev/vdb"
    assert statuses(env, vid) == ("in-use", "attached")

    env.attachments.begin_detaching(A, vid)
    assert statuses(env, vid)[0] == "detaching"
    env.attachments.roll_detaching(A, vid)
    assert statuses(env, vid) == ("in-use", "attached")
    env.attachments.begin_detaching(A, vid)

    # An attached connection's terminate only ends the connection (a call).
    env.volumes.terminate_connection(A, vid, CONNECTOR)
    assert env.vol.sent[-1][0] == "terminate_connection"
    assert statuses(env, vid)[0] == "detaching"

    env.attachments.detach(A, vid)
    assert open_requests(env, vid)[0][0] == "detach_volume"
    run_detach(env, vid, att["id"])
    assert statuses(env, vid) == ("available", "detached")


def test_reserve_and_unreserve(env):
    vid = available_volume(env)
    env.attachments.reserve(A, vid)
    with pytest.raises(exception.InvalidVolume):
        env.attachments.reserve(A, vid)
    env.attachments.unreserve(A, vid)
    assert statuses(env, vid) == ("available", "detached")
    with pytest.raises(exception.InvalidVolume):
        env.attachments.unreserve(A, vid)
    with pytest.raises(exception.InvalidVolume):
        env.attachments.begin_detaching(A, vid)


def test_initialize_connection_alone_holds_the_volume_until_terminated(env):
    """The rule: a connection handed out is recorded on an attachment; until the connector
    lets go (os-terminate_connection) the volume is attaching and cannot be deleted."""
    vid = available_volume(env)
    env.volumes.initialize_connection(A, vid, CONNECTOR)
    assert statuses(env, vid) == ("attaching", "attaching")
    with pytest.raises(exception.VolumeAttached):
        env.volumes.delete_volume(A, vid)
    # Asking again for the same connector reuses the attachment.
    env.volumes.initialize_connection(A, vid, CONNECTOR)
    assert len(env.attachments.list(A)) == 1

    env.volumes.terminate_connection(A, vid, CONNECTOR)
    (action, _state, args), = open_requests(env, vid)
    assert action == "detach_volume"
    run_detach(env, vid, args["attachment_id"])
    assert statuses(env, vid) == ("available", "detached")
    env.volumes.delete_volume(A, vid)
    assert volume(env, vid)["status"] == "deleting"


def test_force_detach_detaches_an_errored_attachment(env):
    vid = available_volume(env)
    att = env.attachments.create(A, vid, connector=CONNECTOR)
    with env.db.writer() as session:
        repository.update(session, rules.get_attachment(session, att["id"]),
                          attach_status="error_attaching")
    env.attachments.detach(ADMIN, vid, att["id"], force=True)
    (_a, _s, args), = open_requests(env, vid)
    assert args["force"] is True
    assert statuses(env, vid)[0] == "detaching"


def test_detach_needs_an_attachment_name_when_there_are_several(env):
    vid = available_volume(env)
    with env.db.writer() as session:
        repository.update(session, repository.get(session, models.Volume, vid),
                          multiattach=True)
    env.attachments.create(A, vid)
    env.attachments.create(A, vid)
    with pytest.raises(exception.InvalidVolume, match="name the attachment_id"):
        env.attachments.detach(A, vid)


# --- nothing destructive while held -------------------------------------------------------

@pytest.mark.parametrize("how", ["reserved", "attaching", "in-use", "detaching"])
def test_held_volume_cannot_be_deleted_unmanaged_or_extended(env, how):
    vid = available_volume(env)
    att = env.attachments.create(A, vid)
    if how != "reserved":
        env.attachments.update(A, att["id"], CONNECTOR)
    if how in ("in-use", "detaching"):
        env.attachments.complete(A, att["id"])
    if how == "detaching":
        env.attachments.begin_detaching(A, vid)
    assert volume(env, vid)["status"] == how
    before = state_of(env.db)
    with pytest.raises(exception.VolumeAttached) as caught:
        env.volumes.delete_volume(A, vid)
    assert caught.value.code == 400
    with pytest.raises(exception.VolumeAttached):
        env.volumes.delete_volume(A, vid, cascade=True)
    with pytest.raises(exception.VolumeAttached):
        env.volumes.unmanage(ADMIN, vid)
    with pytest.raises(exception.VolumeAttached):
        env.volumes.manage_existing(ADMIN, "n1@lvm", {"source-name": "volume-%s" % vid})
    with pytest.raises(exception.InvalidVolume):
        env.volumes.extend_volume(A, vid, 20)
    assert state_of(env.db) == before


def test_in_use_extend_only_where_the_driver_extends_online(env):
    vid = available_volume(env)
    att = env.attachments.create(A, vid, connector=CONNECTOR)
    env.attachments.complete(A, att["id"])
    before = state_of(env.db)
    with pytest.raises(exception.InvalidVolume, match="cannot extend an attached"):
        env.volumes.extend_volume(A, vid, 20)
    assert state_of(env.db) == before
    env.vol.capabilities = {"online_extend_support": True}
    assert env.volumes.extend_volume(A, vid, 20)["status"] == "extending"
    assert volume(env, vid)["previous_status"] == "in-use"


# --- the way back (admin) -------------------------------------------------------------------

def _requests_of(env, rid) -> list[tuple[str, str, str | None]]:
    with env.db.reader() as session:
        return sorted((r.action, r.state, r.result) for r in session.scalars(
            sa.select(models.Request).where(models.Request.resource_id == rid)))


def test_error_extending_can_be_reset_to_available_and_extended_again(env):
    """The issue's bullet: error_extending had no way back but a delete."""
    vid = available_volume(env)
    env.volumes.extend_volume(A, vid, 20)
    assert usage(env)["gigabytes"] == (10, 10)
    with env.db.writer() as session:
        repository.transition(session, models.Volume, vid, "error_extending")
    with pytest.raises(exception.NotAuthorized):
        env.admin.reset_status(A, "volume", vid, "available")
    out = env.admin.reset_status(ADMIN, "volume", vid, "available")
    assert out["previous"] == "error_extending" and out["status"] == "available"
    assert volume(env, vid)["status"] == "available"
    # The extend's open request is failed with the reason, its reservation released.
    assert [(a, s) for a, s, _r in _requests_of(env, vid) if a == "extend_volume"] == [
        ("extend_volume", "failed")]
    assert any("reset to available" in (r or "") for _a, _s, r in _requests_of(env, vid))
    assert usage(env)["gigabytes"] == (10, 0)
    env.volumes.extend_volume(A, vid, 30)
    assert volume(env, vid)["status"] == "extending"


def usage(env, project="pA"):
    return {r: (u["in_use"], u["reserved"]) for r, u in env.quota.get_usages(project).items()}


@pytest.mark.parametrize("status", ["creating", "deleting", "extending", "deleted", "bogus"])
def test_reset_refuses_statuses_a_flow_owns(env, status):
    vid = available_volume(env)
    before = state_of(env.db)
    with pytest.raises(exception.InvalidInput):
        env.admin.reset_status(ADMIN, "volume", vid, status)
    assert state_of(env.db) == before


def test_reset_attach_status_detached_removes_attachments(env):
    vid = available_volume(env)
    att = env.attachments.create(A, vid, connector=CONNECTOR)
    env.attachments.complete(A, att["id"])
    env.admin.reset_status(ADMIN, "volume", vid, "available", attach_status="detached")
    assert statuses(env, vid) == ("available", "detached")
    assert env.attachments.list(A) == []
    with pytest.raises(exception.InvalidInput):
        env.admin.reset_status(ADMIN, "volume", vid, "available", attach_status="glued")
    with pytest.raises(exception.InvalidInput):
        env.admin.reset_status(ADMIN, "volume", vid, "available", migration_status="migrating")


def test_reset_snapshot_group_and_group_snapshot(env):
    vid = available_volume(env)
    sid = env.snapshots.create_snapshot(A, vid)["id"]
    env.admin.reset_status(ADMIN, "snapshot", sid, "error")
    assert env.snapshots.get_snapshot(A, sid)["status"] == "error"
    assert [s for a, s, _r in _requests_of(env, sid)] == ["failed"]
    with env.db.writer() as session:
        gid = repository.create(session, models.Group, status="creating",
                                project_id="pA").id
        gsid = repository.create(session, models.GroupSnapshot, status="deleting",
                                 group_id=gid, project_id="pA").id
    env.admin.reset_status(ADMIN, "group", gid, "available")
    env.admin.reset_status(ADMIN, "group_snapshot", gsid, "error")
    with env.db.reader() as session:
        assert repository.get(session, models.Group, gid).status == "available"
        assert repository.get(session, models.GroupSnapshot, gsid).status == "error"
    with pytest.raises(exception.InvalidInput):
        env.admin.reset_status(ADMIN, "snapshot", sid, "available", attach_status="detached")
    with pytest.raises(exception.InvalidInput):
        env.admin.reset_status(ADMIN, "backup", sid, "available")


def test_force_delete_volume_from_a_transitional_status_is_a_request(env):
    vid = available_volume(env)
    env.volumes.extend_volume(A, vid, 20)
    with pytest.raises(exception.InvalidVolume):
        env.volumes.delete_volume(A, vid)
    with pytest.raises(exception.NotAuthorized):
        env.volumes.force_delete_volume(A, vid)
    row = env.volumes.force_delete_volume(ADMIN, vid)
    assert row["status"] == "deleting"
    states_ = dict(((a, s) for a, s, _r in _requests_of(env, vid)))
    assert states_["extend_volume"] == "failed" and states_["delete_volume"] == "pending"
    assert usage(env)["gigabytes"] == (10, 0)
    assert env.vol.sent[-1][0] == "delete_volume"


def test_force_delete_refuses_a_held_volume(env):
    vid = available_volume(env)
    env.attachments.create(A, vid)
    before = state_of(env.db)
    with pytest.raises(exception.VolumeAttached):
        env.volumes.force_delete_volume(ADMIN, vid)
    assert state_of(env.db) == before


def test_force_delete_snapshot(env):
    vid = available_volume(env)
    sid = env.snapshots.create_snapshot(A, vid)["id"]   # creating
    with pytest.raises(exception.InvalidSnapshot):
        env.snapshots.delete_snapshot(A, sid)
    assert env.snapshots.force_delete_snapshot(ADMIN, sid)["status"] == "deleting"


def test_group_delete_with_volumes_refuses_a_reserved_member(env):
    from tests.unit.test_api import placed_group

    gid = placed_group(env)
    vid = available_volume(env)
    with env.db.writer() as session:
        repository.update(session, repository.get(session, models.Volume, vid), group_id=gid)
    env.attachments.create(A, vid)
    before = state_of(env.db)
    with pytest.raises(exception.VolumeAttached):
        env.groups.delete_group(A, gid, delete_volumes=True)
    assert state_of(env.db) == before


def test_force_detach_picks_the_attachment_of_the_connectors_host(env):
    vid = available_volume(env)
    with env.db.writer() as session:
        repository.update(session, repository.get(session, models.Volume, vid),
                          multiattach=True)
    first = env.attachments.create(A, vid, connector={"host": "h1"})
    second = env.attachments.create(A, vid, connector={"host": "h2"})
    env.attachments.detach(ADMIN, vid, force=True, connector={"host": "h2"})
    assert env.attachments.get(A, second["id"])["attach_status"] == "detaching"
    assert env.attachments.get(A, first["id"])["attach_status"] == "attaching"


def test_volume_view_attachments_in_cinders_shape(env):
    vid = available_volume(env)
    other = available_volume(env)
    att = env.attachments.create(A, vid, instance_uuid=INSTANCE, connector=CONNECTOR)
    env.attachments.attach(A, vid, instance_uuid=INSTANCE, mountpoint="/dev/vdb")
    found = env.attachments.volume_view_attachments(A, [vid, other])
    assert found[other] == []
    (entry,) = found[vid]
    assert entry["attachment_id"] == att["id"] and entry["server_id"] == INSTANCE
    assert entry["device"] == "/dev/vdb" and entry["host_name"] == "client1"
    assert entry["id"] == vid and entry["attached_at"]
    assert env.attachments.volume_view_attachments(B, [vid]) == {vid: []}


def test_reset_says_what_it_cleared_in_the_log(env, caplog):
    vid = available_volume(env)
    env.volumes.extend_volume(A, vid, 20)
    with env.db.reader() as session:
        request_id = session.scalars(sa.select(models.Request.id).where(
            models.Request.resource_id == vid,
            models.Request.action == "extend_volume")).one()
    with caplog.at_level("WARNING", logger="blockmgr.api.admin_actions"):
        env.admin.reset_status(ADMIN, "volume", vid, "error")
    (record,) = [r for r in caplog.records if r.name == "blockmgr.api.admin_actions"]
    message = record.getMessage()
    assert "reset from extending to error" in message and request_id in message
    # gigabytes and gigabytes___DEFAULT__ (the volume's type)
    assert "reservations rolled back: 2" in message


def test_force_delete_of_an_import_only_releases_the_users_object(env):
    """A forced delete of a volume whose import failed (or is under way) must not turn it
    into a plain ``error`` volume: its delete would destroy the object the user imported."""
    for status in ("error_managing_deleting", "managing"):
        vid = env.volumes.manage_existing(A, "n1@lvm", {"source-name": "lv-" + status})["id"]
        if status == "error_managing_deleting":
            for step in ("error_managing", "error_managing_deleting"):
                with env.db.writer() as session:
                    repository.update(session, repository.get(session, models.Volume, vid),
                                      status=step)
        row = env.volumes.force_delete_volume(ADMIN, vid)
        assert row["status"] == "error_managing_deleting", (status, row)
