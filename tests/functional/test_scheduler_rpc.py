"""Scheduler over real RabbitMQ: the client library casts, the scheduler (served in-process by
``SchedulerService``) places and casts on, and volume-side endpoints on two backends record
what reached them. The volume side here is a recording endpoint that can fail a create the
way a worker does (clear the host, cast the request back with ``retry['exc']``), so the test
exercises exactly the scheduler's RPC contract. A unique ``control_exchange`` per test keeps
concurrent runs apart."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from blockmgr import api
from blockmgr import context as bm_context
from blockmgr import notifications
from blockmgr import quota as bm_quota
from blockmgr import rpc
from blockmgr import services
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.scheduler import rpcapi as scheduler_rpcapi
from blockmgr.scheduler import service as sched_service
from tests.conftest import require_service
from tests.functional.daemons import private_vhost

pytestmark = pytest.mark.functional

CTX = bm_context.RequestContext(project_id="p1", user_id="u1")


class VolumeSide:
    """A volume worker's endpoint for one backend that records casts; ``fail_creates``
    makes it hand every create back to the scheduler, as a worker whose driver failed."""

    def __init__(self, host, db, scheduler):
        self.host, self.db, self.scheduler = host, db, scheduler
        self.received = []
        self.fail_creates = False
        self.event = threading.Event()

    def _record(self, method, **kwargs):
        self.received.append((method, kwargs))
        self.event.set()

    def create_volume(self, context, volume_id, request_spec, filter_properties,
                      allow_reschedule=True, request_id=None):
        self._record("create_volume", volume_id=volume_id, filter_properties=filter_properties)
        if self.fail_creates:
            with self.db.writer() as session:
                repository.update(session, repository.get(session, models.Volume, volume_id),
                                  host=None)
            props = dict(filter_properties)
            props["retry"] = dict(props["retry"], exc="driver failed on %s" % self.host)
            self.scheduler.create_volume(context, volume_id, request_spec, props)

    def manage_existing(self, context, volume_id, ref, request_id=None):
        self._record("manage_existing", volume_id=volume_id, ref=ref)


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture(scope="module")
def vhost_url():
    """A RabbitMQ vhost of this module's own (``daemons.private_vhost``): the scheduler's
    topic queue is named after the topic alone, so a scheduler of another test or run on
    the same vhost would take this module's requests."""
    require_service("rabbitmq")
    with private_vhost() as url:
        yield url


@pytest.fixture
def cluster(conf, sqlite_database, vhost_url):
    conf.set_override("control_exchange", "bm-test-%s" % uuid.uuid4().hex[:12])
    conf.set_override("startup_wait", 5, group="scheduler")
    conf.set_override("persistence_connection", "memory", group="flows")
    db = sqlite_database
    transport = rpc.get_transport(conf, url=vhost_url)
    quota = bm_quota.QuotaEngine(db, conf)
    notifier = notifications.MemoryNotifier()
    with db.writer() as session:
        for host in ("n1@lvm", "n2@lvm"):
            services.heartbeat(session, services.register(session, host,
                                                          services.VOLUME_BINARY,
                                                          rpc.VOLUME_TOPIC))
    sched_api = scheduler_rpcapi.SchedulerAPI(transport)
    sides = {h: VolumeSide(h, db, sched_api) for h in ("n1@lvm", "n2@lvm")}
    servers = [rpc.get_server(transport, rpc.VOLUME_TOPIC, h, [side])
               for h, side in sides.items()]
    scheduler = sched_service.SchedulerService(conf, db=db, transport=transport, quota=quota,
                                               notifier=notifier)
    for server in servers:
        server.start()
    scheduler.start()
    client = api.Client(conf, db, quota, transport=transport)

    class Cluster:
        pass
    c = Cluster()
    c.quota = quota
    c.db, c.client, c.sides, c.scheduler, c.sched_api, c.notifier = (
        db, client, sides, scheduler, sched_api, notifier)
    yield c
    scheduler.stop()
    for server in servers:
        server.stop()
        server.wait()
    transport.cleanup()


def report(free):
    return {"volume_backend_name": "lvm", "pools": [{
        "pool_name": "pool", "total_capacity_gb": 100, "free_capacity_gb": free,
        "provisioned_capacity_gb": 100 - free, "reserved_percentage": 0,
        "max_over_subscription_ratio": 1.0, "thin_provisioning_support": False,
        "thick_provisioning_support": True}]}


def status(db, volume_id):
    with db.reader() as session:
        row = repository.get(session, models.Volume, volume_id)
        return row.status, row.host


def test_create_reschedule_error_and_manage_over_rabbitmq(cluster):
    now = time.time()
    cluster.sched_api.update_service_capabilities(CTX, "volume", "n1@lvm", report(80), now)
    cluster.sched_api.update_service_capabilities(CTX, "volume", "n2@lvm", report(60), now)
    assert wait_for(lambda: cluster.scheduler.manager.states.backends()
                    == {"n1@lvm", "n2@lvm"})

    # 1. placed on the emptier backend, host with pool written, cast reaches that worker
    vid = cluster.client.volumes.create_volume(CTX, 10)["id"]
    n1, n2 = cluster.sides["n1@lvm"], cluster.sides["n2@lvm"]
    assert wait_for(lambda: n1.received)
    assert status(cluster.db, vid) == ("creating", "n1@lvm#pool")

    # 2. the chosen backend fails the create: rescheduled to the other one
    n1.fail_creates = True
    n1.received.clear()
    vid = cluster.client.volumes.create_volume(CTX, 10)["id"]
    assert wait_for(lambda: any(k["volume_id"] == vid for _m, k in n2.received))
    retry = n2.received[-1][1]["filter_properties"]["retry"]
    assert retry["num_attempts"] == 2 and retry["backends"] == ["n1@lvm", "n2@lvm"]
    assert status(cluster.db, vid) == ("creating", "n2@lvm#pool")

    # 3. every backend fails: error after scheduler_max_attempts, with a notification
    n2.fail_creates = True
    vid = cluster.client.volumes.create_volume(CTX, 10)["id"]
    assert wait_for(lambda: status(cluster.db, vid)[0] == "error")
    assert "volume.create.error" in cluster.notifier.types()

    # 4. manage_existing is routed to the requested (up) host, pool added
    row = cluster.client.volumes.manage_existing(CTX, "n2@lvm", {"source-name": "lv9"})
    assert wait_for(lambda: any(m == "manage_existing" for m, _k in n2.received))
    assert status(cluster.db, row["id"]) == ("managing", "n2@lvm#pool")
    assert cluster.quota.get_usages("p1")["volumes"]["in_use"] == 4
