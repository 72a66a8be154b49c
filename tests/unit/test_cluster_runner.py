"""Two cluster members in one process (real Redis, one SQLite database and logbook): flows
run under claims, a member that stops renewing loses its flow to the peer's conductor, the
peer finishes it from the logbook, start-up recovery leaves validly claimed flows alone, and a
non-clustered manager is untouched by any of it."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis
import sqlalchemy as sa
from taskflow.engines import helpers as tf_helpers
from taskflow.persistence import models as tf_models

from blockmgr import context as bm_context
from blockmgr.cluster import claims
from blockmgr.cluster import conductor as cluster_conductor
from blockmgr.cluster import member as cluster_member
from blockmgr.cluster import recovery as cluster_recovery
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.flows import create_volume as create_flow
from blockmgr.flows import engine as flow_engine
from blockmgr.flows import memory_persistence
from blockmgr.flows import persistence
from blockmgr.notifications import MemoryNotifier
from blockmgr.quota import QuotaEngine
from blockmgr.testing.fake_driver import FakeDriver
from blockmgr.volume import recovery
from blockmgr.volume.manager import VolumeManager
from tests.conftest import require_service

REDIS_URL = "redis://127.0.0.1:6379/0"
PROJECT = "p1"
CTX = bm_context.RequestContext(project_id=PROJECT, user_id="u1")
TTL = 2


class GatedDriver(FakeDriver):
    """A fake driver whose create_volume waits for ``gate`` (a worker stuck or dead
    in the middle of the driver call)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.entered = threading.Event()
        self.gate = threading.Event()

    def create_volume(self, volume):
        self.entered.set()
        self.gate.wait()
        return super().create_volume(volume)


@pytest.fixture
def cluster(sqlite_database, conf):
    require_service("redis")
    name = "ut-%s" % uuid.uuid4().hex[:10]
    chost = "%s@fake" % name
    conf.set_override("connection", sqlite_database.url, group="database")
    conf.set_override("jobboard_url", REDIS_URL, group="cluster")
    conf.set_override("claim_ttl", TTL, group="cluster")
    conf.set_override("claim_renew_interval", 0.3, group="cluster")
    conf.set_override("takeover_poll_interval", 0.2, group="cluster")
    lost = []
    built = []

    def member(host: str, driver=None):
        m = cluster_member.open_member(conf, chost, "%s@fake" % host, sqlite_database,
                                       on_lost=lambda f, why: lost.append((host, f, why)))
        driver = driver or FakeDriver(None, "fake", host=chost)
        manager = VolumeManager(conf, "fake", db=sqlite_database, driver=driver,
                                quota=QuotaEngine(sqlite_database, conf),
                                notifier=MemoryNotifier(), runner=m.runner, locks=m.locks,
                                host=chost)
        built.append(m)
        return m, manager

    yield member, lost
    for m in built:
        m.stop()
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match="blockmgr:%s*" % chost)) + list(
        client.scan_iter(match="blockmgr:%s*" % name))
    if keys:
        client.delete(*keys)
    client.close()


def _volume(manager, size=1):
    with manager.db.writer() as session:
        row = repository.create(session, models.Volume, status="creating", size=size,
                                host=manager.host + "#pool", project_id=PROJECT)
        manager.quota.consume(session, PROJECT, volumes=1, gigabytes=size)
        return row.id


def _status(manager, vid):
    with manager.db.reader() as session:
        return repository.get(session, models.Volume, vid).status


def _wait(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in %.0f s" % timeout
        time.sleep(0.05)


def test_a_flow_runs_under_its_claim_and_its_job_is_consumed(cluster):
    member, lost = cluster
    m, manager = member("n1")
    vid = _volume(manager)
    assert manager.create_volume(CTX, vid) == vid
    assert _status(manager, vid) == "available"
    assert m.board.jobs() == [] and m.keeper.held() == set()
    assert manager.runner.backend.unfinished_flow_uuids() == set()
    assert manager.quota.check() == [] and lost == []


def test_peer_takes_over_a_dead_members_flow_and_finishes_it(cluster):
    member, lost = cluster
    dead_driver = GatedDriver(None, "fake", host="x")
    a, manager_a = member("n1", dead_driver)
    b, manager_b = member("n2")
    vid = _volume(manager_a, size=2)
    threading.Thread(target=manager_a.create_volume, args=(CTX, vid), daemon=True).start()
    assert dead_driver.entered.wait(10)
    [job] = a.board.jobs()
    assert a.board.owner(job.uuid) == a.owner
    assert job.details["resource_id"] == vid and vid in job.details["locks"]

    # While A renews, B's conductor finds nothing to take over.
    b.start_conductor(manager_b)
    time.sleep(TTL * 1.5)
    assert a.board.owner(job.uuid) == a.owner and b.conductor.taken_over == []
    # Recovery on B must leave A's validly claimed flow alone, and its volume too.
    assert manager_b.runner.unfinished() == []
    assert vid in cluster_recovery.busy_resources(manager_b.runner)

    # A dies: no more renewals; its tooz locks go with its coordinator.
    a.keeper.stop()
    a.coordinator._acquired_locks.clear()
    _wait(lambda: b.conductor.taken_over, timeout=TTL + 10)
    assert b.conductor.taken_over == [(job.uuid, "resume")]
    assert _status(manager_b, vid) == "available"
    assert "volume-%s" % vid in manager_b.driver.volumes
    assert b.board.jobs() == []
    assert manager_b.runner.backend.unfinished_flow_uuids() == set()
    assert manager_b.quota.check() == []
    with manager_b.db.reader() as session:
        assert session.scalars(sa.select(models.Reservation).where(
            models.Reservation.deleted.is_(False))).all() == []
    assert lost == []


def test_a_job_whose_flow_was_never_persisted_settles_its_resource(cluster):
    member, _lost = cluster
    b, manager_b = member("n2")
    vid = _volume(manager_b)
    flow = str(uuid.uuid4())
    # A member died right after posting (claimed for a moment) and before persisting.
    b.board.post_claimed(flow, "dead-member", 0.2, {"kind": "volume", "resource_id": vid,
                                                    "locks": [vid]})
    assert vid in cluster_recovery.busy_resources(manager_b.runner)
    time.sleep(0.4)
    conductor = cluster_conductor.TakeoverConductor(b.runner, manager_b, 10)
    assert conductor.poll_once(wait=True) == 1
    assert conductor.taken_over == [(flow, "orphan")]
    assert _status(manager_b, vid) == "error"
    assert b.board.jobs() == []


def test_recovery_claims_unowned_flows_and_skips_claimed_ones(cluster):
    member, _lost = cluster
    b, manager_b = member("n2")
    # Two unfinished flows in the cluster logbook: one whose job a live peer holds, one
    # persisted without any job (e.g. before the backend joined a cluster).
    plain = flow_engine.FlowRunner(manager_b.runner.backend, manager_b.host)
    held, free = _volume(manager_b), _volume(manager_b)
    ids = {}
    for vid in (held, free):
        engine_flow = create_flow.get_flow()
        fd = tf_models.FlowDetail(engine_flow.name, uuid=str(uuid.uuid4()))
        tf_helpers.save_factory_details(fd, create_flow.get_flow, (), {})
        fd.meta.update({"host": manager_b.host, "kind": "volume", "resource_id": vid,
                        "action": "create"})
        plain.backend.add_flow_detail(plain.book, fd)
        engine = plain._load(engine_flow, fd, manager_b.runtime())
        engine.storage.inject({"context": CTX.to_dict(), "volume_id": vid,
                               "request_spec": {}, "filter_properties": {},
                               "allow_reschedule": False, "flow_id": fd.uuid})
        engine.compile()
        engine.prepare()
        plain.backend.flush(fd.uuid)
        ids[vid] = fd.uuid
    b.board.post_claimed(ids[held], "live-peer", 30, {"resource_id": held, "locks": [held]})

    report = recovery.recover(manager_b)
    assert report.resumed == [ids[free]] and report.reverted == []
    assert _status(manager_b, free) == "available"
    assert _status(manager_b, held) == "creating"          # the live peer's business
    assert ids[held] in manager_b.runner.backend.unfinished_flow_uuids()
    assert b.board.owner(ids[held]) == "live-peer"
    assert all(o[1] != held for o in report.orphans)


def test_a_member_that_lost_its_claim_is_told(cluster):
    member, lost = cluster
    a, _manager = member("n1")
    flow = str(uuid.uuid4())
    a.board.post_claimed(flow, a.owner, TTL, {})
    a.keeper.add(flow)
    a.board._client.set(a.board._keys(flow)[1], b"a-peer")
    _wait(lambda: lost, timeout=10)
    assert lost[0][:2] == ("n1", flow)


def test_fail_stop_is_the_default_reaction():
    assert claims.ClaimKeeper(None, "x", 3, 1).on_lost is claims.fail_stop


def test_memory_persistence_is_refused_in_cluster_mode(conf):
    from blockmgr import exception

    conf.set_override("jobboard_url", REDIS_URL, group="cluster")
    with pytest.raises(exception.ConfigurationError) as info:
        cluster_member.ClusterMember(conf, "c@lb", "h@lb", memory_persistence.MemoryPersistence())
    assert "persistence_connection" in info.value.msg
