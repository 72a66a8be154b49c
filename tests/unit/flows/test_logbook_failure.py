"""A flow whose logbook write fails mid-run does not leave its resource transitional.

The failure is injected into the real SQL logbook backend (its one write method), at the
boundary before the manage flow's quota commit -- after quota was reserved and the driver
bound the object. If the logbook takes writes again when the runner re-reads it, the flow is
finished in place as a restart would finish it; if it stays down, the volume is put in its
error status at once and the flow is finished by recovery at the next start.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from taskflow import states as tf_states

from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import manage_existing
from blockmgr.flows import persistence
from blockmgr.notifications import MemoryNotifier
from blockmgr.quota import QuotaEngine
from blockmgr.volume.manager import VolumeManager

CTX = bm_context.RequestContext(project_id="p1")
COMMIT_TASK = manage_existing.QuotaCommitTask().name


class Driver:
    def __init__(self):
        self.calls: list[str] = []

    def manage_existing_get_size(self, volume, ref):
        return 3

    def manage_existing(self, volume, ref):
        self.calls.append("manage")
        return {"provider_location": "pool/lv"}

    def unmanage(self, volume):
        self.calls.append("unmanage")


def _manager(db, conf, driver=None):
    conf.set_override("host", "node1")
    conf.set_override("connection", db.url, group="database")
    return VolumeManager(conf, "b1", db=db, driver=driver or Driver(),
                         quota=QuotaEngine(db, conf), notifier=MemoryNotifier())


class Outage:
    """Makes the logbook's writes fail from the first one that starts ``task`` (or from the
    first write at all), until the runner re-reads the flow (if ``back_on_read``)."""

    def __init__(self, monkeypatch, backend, *, task: str | None, back_on_read: bool):
        self.down, self.failed, armed = False, 0, [True]
        write = backend._write

        def failing_write(flow_uuid, staged):
            starts = task is None or any(ad.name == task and ad.state == tf_states.RUNNING
                                         for ad in staged.atoms.values())
            if starts and armed:
                self.down = True
                armed.clear()   # one outage
            if self.down:
                self.failed += 1
                raise sa.exc.OperationalError("INSERT INTO atomdetails", {},
                                              Exception("disk I/O error"))
            return write(flow_uuid, staged)

        read = persistence._Connection.get_flow_details

        def reading(conn, *args, **kwargs):
            if back_on_read:
                self.down = False
            return read(conn, *args, **kwargs)

        monkeypatch.setattr(backend, "_write", failing_write)
        monkeypatch.setattr(persistence._Connection, "get_flow_details", reading)


def _managing(manager):
    with manager.db.writer() as session:
        return repository.create(session, models.Volume, status="managing", size=0,
                                 host=manager.host + "#pool", project_id="p1").id


def _volume(manager, volume_id):
    with manager.db.reader() as session:
        return repository.get(session, models.Volume, volume_id)


def _usage(manager):
    usage = manager.quota.get_usages("p1")["gigabytes"]
    return usage["in_use"], usage["reserved"]


def test_flow_is_finished_in_place_when_the_logbook_comes_back(sqlite_database, conf,
                                                               monkeypatch):
    manager = _manager(sqlite_database, conf)
    outage = Outage(monkeypatch, manager.runner.backend, task=COMMIT_TASK, back_on_read=True)
    volume_id = _managing(manager)
    assert manager.manage_existing(CTX, volume_id, {"source-name": "lv"}) == volume_id
    assert outage.failed >= 1
    row = _volume(manager, volume_id)
    assert (row.status, row.size, row.provider_location) == ("available", 3, "pool/lv")
    assert _usage(manager) == (3, 0)
    assert manager.runner.unfinished() == []
    assert manager.driver.calls == ["manage"]   # resumed at the commit: not bound twice


def test_volume_goes_to_error_at_once_and_recovery_finishes_the_flow(sqlite_database, conf,
                                                                     monkeypatch):
    manager = _manager(sqlite_database, conf)
    outage = Outage(monkeypatch, manager.runner.backend, task=COMMIT_TASK,
                    back_on_read=False)
    volume_id = _managing(manager)
    with pytest.raises(exception.FlowLogbookWriteFailed, match="disk I/O error"):
        manager.manage_existing(CTX, volume_id, {"source-name": "lv"})
    row = _volume(manager, volume_id)
    assert row.status == "error_managing"
    assert "FlowLogbookWriteFailed" not in (row.status_reason or "") and row.status_reason
    assert _usage(manager) == (0, 3)   # still held by the flow, which recovery finishes

    monkeypatch.undo()                  # the logbook is back; the worker restarts
    assert outage.down
    restarted = _manager(sqlite_database, conf, driver=manager.driver)
    report = restarted.init_host()
    assert len(report.reverted) == 1    # the manage task was running: never repeated
    assert _volume(restarted, volume_id).status == "error_managing"
    assert _usage(restarted) == (0, 0)
    assert manager.driver.calls == ["manage", "unmanage"]
    assert restarted.runner.unfinished() == []


def test_a_flow_whose_first_write_fails_never_starts(sqlite_database, conf, monkeypatch):
    manager = _manager(sqlite_database, conf)
    Outage(monkeypatch, manager.runner.backend, task=None, back_on_read=False)
    volume_id = _managing(manager)
    with pytest.raises(exception.FlowLogbookWriteFailed):
        manager.manage_existing(CTX, volume_id, {"source-name": "lv"})
    assert _volume(manager, volume_id).status == "error_managing"
    assert manager.driver.calls == []
    assert _usage(manager) == (0, 0)
