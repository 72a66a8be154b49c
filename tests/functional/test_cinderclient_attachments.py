"""python-cinderclient against ``blockmgr``'s REST API over HTTP: the attachments API
(3.44), the legacy attach actions Nova's older flow sends, and the admin actions
(reset-state, force-delete, force-detach) -- the calls a client library makes, unchanged."""

from __future__ import annotations

import pytest

pytest.importorskip("cinderclient")

from cinderclient import exceptions as cinder_exc                    # noqa: E402

from tests.functional.test_cinderclient import cinder, server, wait  # noqa: E402,F401
from tests.unit.rest.conftest import stack                            # noqa: E402,F401

pytestmark = [pytest.mark.functional]

INSTANCE = "5b2d7c1e-3f4a-4b6c-9d8e-7f6a5b4c3d2e"
CONNECTOR = {"host": "compute-1", "initiator": "iqn.2026-12.example:compute-1"}


def test_cinderclient_attachments_api(server, stack):  # noqa: F811
    c = cinder(server, "pA", version="3.44")
    vol = c.volumes.create(1)
    wait(c.volumes.get, vol.id)
    created = c.attachments.create(vol.id, None, instance_id=INSTANCE)
    assert created["status"] == "reserved"
    assert c.volumes.get(vol.id).status == "reserved"
    updated = c.attachments.update(created["id"], CONNECTOR)
    assert updated.connection_info["driver_volume_type"] == "local"
    c.attachments.complete(created["id"])
    assert c.volumes.get(vol.id).status == "in-use"
    assert [a.id for a in c.attachments.list(search_opts={"volume_id": vol.id})] == [
        created["id"]]
    with pytest.raises(cinder_exc.BadRequest):
        c.volumes.delete(vol.id)
    c.attachments.delete(created["id"])
    wait(c.volumes.get, vol.id, statuses=("available",))
    c.volumes.delete(vol.id)
    wait(c.volumes.get, vol.id, statuses=(None,))


def test_cinderclient_legacy_and_admin_actions(server, stack):  # noqa: F811
    c = cinder(server, "pA")
    admin = cinder(server, "pA", admin=True)
    vol = c.volumes.create(1)
    wait(c.volumes.get, vol.id)
    c.volumes.reserve(vol.id)
    assert c.volumes.get(vol.id).status == "attaching"
    info = c.volumes.initialize_connection(vol.id, CONNECTOR)
    assert info["driver_volume_type"] == "local"
    c.volumes.attach(vol.id, INSTANCE, "/dev/vdb")
    assert c.volumes.get(vol.id).status == "in-use"
    c.volumes.begin_detaching(vol.id)
    c.volumes.roll_detaching(vol.id)
    assert c.volumes.get(vol.id).status == "in-use"
    with pytest.raises(cinder_exc.Forbidden):
        c.volumes.force_delete(vol.id)
    admin.volumes.detach(vol.id)
    wait(c.volumes.get, vol.id, statuses=("available",))

    admin.volumes.reset_state(vol.id, "error")
    assert c.volumes.get(vol.id).status == "error"
    admin.volumes.reset_state(vol.id, "available")
    snap = c.volume_snapshots.create(vol.id)
    wait(c.volume_snapshots.get, snap.id)
    admin.volume_snapshots.reset_state(snap.id, "error")
    assert c.volume_snapshots.get(snap.id).status == "error"
    admin.volume_snapshots.delete(snap.id, force=True)
    wait(c.volume_snapshots.get, snap.id, statuses=(None,))
    admin.volumes.force_delete(vol.id)
    wait(c.volumes.get, vol.id, statuses=(None,))
