"""manage_existing flow: references that name a volume this backend already manages.

The flow refuses them with ``ManageExistingAlreadyManaged`` before the driver is asked
anything; the volume ends ``error_managing`` and no quota is reserved.
"""

from __future__ import annotations

import pytest

from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.notifications import MemoryNotifier
from blockmgr.quota import QuotaEngine
from blockmgr.volume.manager import VolumeManager

CTX = bm_context.RequestContext(project_id="p1")


class RecordingDriver:
    """Answers like a backend holding any object; records every call."""

    def __init__(self):
        self.calls: list[str] = []

    def manage_existing_get_size(self, volume, ref):
        self.calls.append("get_size")
        return 2

    def manage_existing(self, volume, ref):
        self.calls.append("manage")
        return {"provider_id": "lv-%s" % volume.id}

    def unmanage(self, volume):
        self.calls.append("unmanage")

    def manage_existing_source(self, volume, ref):
        return dict(ref)

    def restore_managed_name(self, volume, source_ref):
        self.calls.append("restore")


@pytest.fixture
def manager(sqlite_database, conf):
    conf.set_override("host", "node1")
    conf.set_override("persistence_connection", "memory", group="flows")
    return VolumeManager(conf, "b1", db=sqlite_database, driver=RecordingDriver(),
                         quota=QuotaEngine(sqlite_database, conf), notifier=MemoryNotifier())


def _volume(manager, status="managing", host=None, **values):
    with manager.db.writer() as session:
        return repository.create(session, models.Volume, status=status, size=0,
                                 host=host or manager.host + "#pool", project_id="p1",
                                 **values).id


def _row(manager, volume_id):
    with manager.db.reader() as session:
        return repository.get(session, models.Volume, volume_id)


@pytest.mark.parametrize("how", ["name", "provider_id"])
def test_a_reference_to_a_volume_of_this_backend_is_refused_before_the_driver(manager, how):
    other = _volume(manager, status="available", provider_id="lv-7")
    ref = ({"source-name": "volume-%s" % other} if how == "name"
           else {"source-id": "lv-7"})
    volume_id = _volume(manager)
    with pytest.raises(exception.ManageExistingAlreadyManaged, match=other):
        manager.manage_existing(CTX, volume_id, ref)
    assert manager.driver.calls == []
    row = _row(manager, volume_id)
    assert row.status == "error_managing"
    assert "ManageExistingAlreadyManaged" in row.status_reason
    usage = manager.quota.get_usages("p1")["gigabytes"]
    assert (usage["in_use"], usage["reserved"]) == (0, 0)
    assert manager.notifier.types() == []   # refused before the flow's start event


def test_the_volume_being_managed_may_name_itself(manager):
    """A re-run after a crash in which the driver already renamed the object."""
    volume_id = _volume(manager)
    manager.manage_existing(CTX, volume_id, {"source-name": "volume-%s" % volume_id})
    assert manager.driver.calls == ["get_size", "manage"]
    row = _row(manager, volume_id)
    assert (row.status, row.size, row.provider_id) == ("available", 2, "lv-%s" % volume_id)


@pytest.mark.parametrize("where", ["another backend", "deleted"])
def test_volumes_this_backend_does_not_manage_do_not_count(manager, where):
    if where == "another backend":
        other = _volume(manager, status="available", host="node1@b2#pool",
                        provider_id="lv-7")
    else:
        other = _volume(manager, status="deleting", provider_id="lv-7")
        with manager.db.writer() as session:
            repository.soft_delete(session, repository.get(session, models.Volume, other))
    volume_id = _volume(manager)
    manager.manage_existing(CTX, volume_id, {"source-name": "volume-%s" % other})
    manager.manage_existing(CTX, _volume(manager), {"source-id": "lv-7"})
    assert manager.driver.calls == ["get_size", "manage"] * 2
    assert _row(manager, volume_id).status == "available"
