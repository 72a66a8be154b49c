"""The volume worker's attachment flows on SQLite with the fake driver: connect (a call) and
detach (a ledger request), their driver calls, and what a failure leaves."""

from __future__ import annotations

import pytest

from blockmgr import exception
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import attachments as rules
from tests.unit.test_manager import CTX, _get, _volume
from tests.unit.test_manager import env  # noqa: F401  (fixture)

CONNECTOR = {"host": "client1"}


def _hold(manager, vid, status="reserved"):
    """An attachment as the API leaves it (``reserved``, volume ``reserved``)."""
    with manager.db.writer() as session:
        row = repository.create(session, models.Attachment, volume_id=vid,
                                attach_status="reserved", project_id="p1")
        rules.settle_volume(session, vid)
        return row.id


def _attachment(manager, attachment_id):
    with manager.db.reader() as session:
        row = session.get(models.Attachment, attachment_id)
        session.expunge(row)
        return row


def _detaching(manager, attachment_id):
    with manager.db.writer() as session:
        repository.update(session, rules.get_attachment(session, attachment_id),
                          attach_status="detaching")
        rules.settle_volume(session, _attachment(manager, attachment_id).volume_id)


def test_connect_exports_connects_and_records(env):  # noqa: F811
    vid = _volume(env, status="available")
    _created(env, vid)
    att = _hold(env, vid)
    info = env.connect_attachment(CTX, vid, att, CONNECTOR)
    assert info["driver_volume_type"] == "fake"
    assert info["data"]["attachment_id"] == att and info["data"]["access_mode"] == "rw"
    assert [c.method for c in env.driver.calls][-2:] == ["create_export",
                                                         "initialize_connection"]
    row = _attachment(env, att)
    assert row.attach_status == "attaching" and row.attached_host == "client1"
    assert _get(env, models.Volume, vid).status == "attaching"
    assert env.runner.backend.unfinished_flow_uuids() == set()


def _created(env, vid):
    env.driver.create_volume(_view(env, vid))
    return env.driver.volumes["volume-%s" % vid]


def _view(env, vid):
    from blockmgr.interface.objects import VolumeView

    with env.db.reader() as session:
        return VolumeView.from_model(repository.get(session, models.Volume, vid))


def test_failed_connect_undoes_the_export_and_keeps_the_hold(env):  # noqa: F811
    vid = _volume(env, status="available")
    _created(env, vid)
    att = _hold(env, vid)
    env.driver.inject_failure("initialize_connection",
                              exception.VolumeBackendAPIException(reason="target down"))
    with pytest.raises(exception.VolumeBackendAPIException):
        env.connect_attachment(CTX, vid, att, CONNECTOR)
    assert "remove_export" in [c.method for c in env.driver.calls]
    assert _attachment(env, att).attach_status == "reserved"
    assert _get(env, models.Volume, vid).status == "reserved"


def test_connect_refuses_a_volume_nobody_reserved(env):  # noqa: F811
    vid = _volume(env, status="available")
    _created(env, vid)
    with env.db.writer() as session:
        att = repository.create(session, models.Attachment, volume_id=vid,
                                attach_status="reserved").id
    with pytest.raises(exception.InvalidVolume, match="reserve it"):
        env.connect_attachment(CTX, vid, att, CONNECTOR)
    assert env.driver.calls_to("create_export") == []


def test_detach_terminates_removes_export_and_frees_the_volume(env):  # noqa: F811
    vid = _volume(env, status="available")
    _created(env, vid)
    att = _hold(env, vid)
    env.connect_attachment(CTX, vid, att, CONNECTOR)
    _detaching(env, att)
    assert _get(env, models.Volume, vid).status == "detaching"
    assert env.detach_volume(CTX, vid, att) == "available"
    methods = [c.method for c in env.driver.calls]
    assert methods[-2:] == ["terminate_connection", "remove_export"]
    assert env.driver.connections["volume-%s" % vid] == []
    row = _attachment(env, att)
    assert row.deleted and row.attach_status == "detached" and row.detach_time
    volume = _get(env, models.Volume, vid)
    assert (volume.status, volume.attach_status) == ("available", "detached")
    # Run again (a redelivered request): the attachment is gone, nothing happens.
    assert env.detach_volume(CTX, vid, att) is None
    assert _get(env, models.Volume, vid).status == "available"


def test_failed_detach_leaves_error_detaching_and_the_volume_in_use(env):  # noqa: F811
    vid = _volume(env, status="available")
    _created(env, vid)
    att = _hold(env, vid)
    env.connect_attachment(CTX, vid, att, CONNECTOR)
    with env.db.writer() as session:
        repository.update(session, rules.get_attachment(session, att), attach_status="attached")
        rules.settle_volume(session, vid)
    _detaching(env, att)
    env.driver.inject_failure("terminate_connection",
                              exception.VolumeBackendAPIException(reason="busy"), times=1)
    with pytest.raises(exception.VolumeBackendAPIException):
        env.detach_volume(CTX, vid, att)
    assert _attachment(env, att).attach_status == "error_detaching"
    assert _get(env, models.Volume, vid).status == "in-use"


def test_forced_detach_goes_on_when_the_backend_fails(env):  # noqa: F811
    vid = _volume(env, status="available")
    _created(env, vid)
    att = _hold(env, vid)
    env.connect_attachment(CTX, vid, att, CONNECTOR)
    _detaching(env, att)
    env.driver.inject_failure("terminate_connection",
                              exception.VolumeBackendAPIException(reason="gone"))
    assert env.detach_volume(CTX, vid, att, force=True) == "available"
    assert _attachment(env, att).deleted


def test_online_extend_is_declared_by_the_driver_class_default_false():
    from blockmgr.drivers.loopback.driver import LoopbackDriver
    from blockmgr.interface import VolumeDriver
    from blockmgr.testing.fake_driver import FakeDriver

    assert VolumeDriver.online_extend_support is False
    assert FakeDriver.online_extend_support is False
    assert LoopbackDriver.online_extend_support is True
