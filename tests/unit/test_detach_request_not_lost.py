"""A detach accepted while its volume worker is stopped (the cast fails) is not lost: the
request is a row written with the status change; the worker's first sweep after it starts
rings it, the endpoint claims it and runs the detach flow, and the volume is available."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from blockmgr import api
from blockmgr import context as bm_context
from blockmgr import ledger
from blockmgr import quota as bm_quota
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.db import requests as db_requests
from blockmgr.flows import attachments as rules
from blockmgr.interface.objects import VolumeView
from blockmgr.notifications import MemoryNotifier
from blockmgr.testing.fake_driver import FakeDriver
from blockmgr.volume import ledger_hooks
from blockmgr.volume.endpoint import VolumeEndpoint
from blockmgr.volume.manager import VolumeManager
from tests.unit.test_api import RecordingSchedulerAPI, RecordingVolumeAPI

HOST = "node1@fake"
CTX = bm_context.RequestContext(project_id="p1", user_id="u1")


class StoppedWorker(RecordingVolumeAPI):
    """Calls reach the (in-process) manager; casts fail as with a stopped worker."""

    def __init__(self, manager):
        super().__init__()
        self.manager = manager
        self.fail = ConnectionError("the volume worker is stopped")

    def _call(self, ctxt, host, method, **kwargs):
        kwargs.pop("_version", None)
        return getattr(self.manager, method)(ctxt, **kwargs)


@pytest.fixture
def world(conf, sqlite_database):
    conf.set_override("persistence_connection", "memory", group="flows")
    conf.set_override("retry_delay", 0.0, group="requests")
    db = sqlite_database
    manager = VolumeManager(conf, "fake", db=db, driver=FakeDriver(None, "fake", host=HOST),
                            quota=bm_quota.QuotaEngine(db, conf), notifier=MemoryNotifier(),
                            host=HOST)
    client = api.Client(conf, db, manager.quota, scheduler_rpcapi=RecordingSchedulerAPI(),
                        volume_rpcapi=StoppedWorker(manager))
    return manager, client


def test_a_detach_accepted_while_the_worker_is_stopped_runs_when_it_starts(world):
    manager, client = world
    with manager.db.writer() as session:
        vid = repository.create(session, models.Volume, status="available", size=1,
                                host=HOST + "#fake", project_id="p1").id
    with manager.db.reader() as session:
        manager.driver.create_volume(VolumeView.from_model(
            repository.get(session, models.Volume, vid)))
    att = client.attachments.create(CTX, vid, connector={"host": "c1"})
    client.attachments.complete(CTX, att["id"])

    client.attachments.delete(CTX, att["id"])          # the cast fails: nobody is told
    with manager.db.reader() as session:
        (request,) = [r for r in session.scalars(
            sa.select(models.Request)) if r.action == "detach_volume"]
        assert request.state == "pending"
        assert repository.get(session, models.Volume, vid).status == "detaching"

    # The worker starts: its ledger sweeps and rings the pending request through its queue.
    endpoint = VolumeEndpoint(manager, capabilities=dict)
    endpoint.ledger = ledger.Ledger(manager.db, manager.conf, owner_prefix=HOST,
                                    targets=[HOST],
                                    hooks=ledger_hooks.BackendRequestHooks(manager))
    rung = []
    assert endpoint.ledger.sweep(rung.append) == 1
    (row,) = rung
    getattr(endpoint, row.action)(bm_context.RequestContext.from_dict(row.context),
                                  request_id=row.id, **row.arguments)

    with manager.db.reader() as session:
        volume = repository.get(session, models.Volume, vid)
        assert (volume.status, volume.attach_status) == ("available", "detached")
        assert db_requests.get(session, row.id).state == "done"
        assert rules.live_attachments(session, vid) == []
    assert manager.driver.connections["volume-%s" % vid] == []
