"""Start-up path of ``blockmgr-volume``: native threads only, database pool sized to the
daemon's concurrency, resources left transitional without a flow resolved once the requests
queued before the start are served (``blockmgr.volume.drain``)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
import threading

import pytest

from blockmgr import conf as bm_conf
from blockmgr import context as bm_context
from blockmgr import rpc
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.notifications import MemoryNotifier
from blockmgr.quota import QuotaEngine
from blockmgr.testing.fake_driver import FakeDriver
from blockmgr.volume import drain as volume_drain
from blockmgr.volume import recovery
from blockmgr.volume import service as volume_service
from blockmgr.volume.manager import VolumeManager
from tests.unit.test_volume_service import PROJECT
from tests.unit.test_volume_service import _status
from tests.unit.test_volume_service import _volume
from tests.unit.test_volume_service import _wait_for
from tests.unit.test_volume_service import env  # noqa: F401


def test_daemon_process_runs_without_eventlet():
    """In a fresh interpreter (the choice is process-wide): after use_native_threads() the
    daemon's whole import graph loads without eventlet, on oslo.service's threading
    backend; without cotyledon nothing is changed."""
    script = textwrap.dedent("""
        import importlib.util, sys
        from blockmgr.cmd import volume
        chosen = volume.use_native_threads()
        import oslo_messaging
        from oslo_service import backend
        from blockmgr.volume import service, manager, endpoint
        has_cotyledon = importlib.util.find_spec("cotyledon") is not None
        assert chosen is has_cotyledon, (chosen, has_cotyledon)
        if chosen:
            assert sys.modules["eventlet"] is None
            assert backend.get_backend_type() == backend.BackendType.THREADING
            assert not [m for m in sys.modules if m.startswith("eventlet.")]
        print("ok", chosen)
    """)
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", script],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    expected = importlib.util.find_spec("cotyledon") is not None
    assert result.stdout.split() == ["ok", str(expected)]


def test_use_native_threads_leaves_an_eventlet_process_alone(monkeypatch):
    from blockmgr.cmd import volume

    monkeypatch.setitem(sys.modules, "eventlet", object())   # already loaded by someone
    assert volume.use_native_threads() is False
    assert sys.modules["eventlet"] is not None


def _conf(tmp_path, **database):
    conf = bm_conf.new_config(args=[])
    conf.set_override("state_path", str(tmp_path))
    conf.set_override("connection", database.pop("connection",
                                                  "mysql+pymysql://u@127.0.0.1/x"),
                      group="database")
    for name, value in database.items():
        conf.set_override(name, value, group="database")
    return conf


def test_pool_is_raised_to_the_worker_threads_within_the_configured_cap(tmp_path):
    conf = _conf(tmp_path)            # oslo.db defaults: pool 5, overflow 50
    conf.set_override("rpc_worker_threads", 16)
    assert volume_service.pool_options(conf) == {"max_pool_size": 20, "max_overflow": 35}


def test_pool_never_exceeds_the_operators_connection_cap(tmp_path):
    conf = _conf(tmp_path, max_pool_size=4, max_overflow=6)
    conf.set_override("rpc_worker_threads", 16)
    assert volume_service.pool_options(conf) == {"max_pool_size": 10, "max_overflow": 0}


@pytest.mark.parametrize("database", [
    {"max_pool_size": 64},                                     # already large enough
    {"connection": "sqlite:////tmp/x.sqlite"},                 # SQLite: own pooling
])
def test_pool_left_alone(tmp_path, database):
    assert volume_service.pool_options(_conf(tmp_path, **database)) == {}


# --- resources left transitional without a flow: resolved after the queue is served -------
# (blockmgr.volume.drain; the service runs on the in-process broker, which keeps a message
# cast to a server nobody listens on yet, as RabbitMQ keeps it in the server's queue)

CTX = bm_context.RequestContext(project_id="p1", user_id="u1")


def test_a_queued_create_is_served_and_only_requestless_orphans_error(env):
    """Two ``creating`` rows without a flow at start: one has its create still queued for
    the backend, one has nothing. The queued one is created; the other moves to ``error``
    only after every request queued before the start has finished -- here after the
    queued create, held by the driver, is let go."""
    queued, lost = _volume(env.db), _volume(env.db)
    env.api.create_volume(CTX, "node1@fake", queued, {}, {})   # waits in the queue
    gate, entered = threading.Event(), threading.Event()

    def hold(call):
        entered.set()
        gate.wait(20)

    driver = FakeDriver(None, "fake", host="node1@fake")
    driver.inject_failure("create_volume", hold)
    svc = env.make(driver=driver)
    svc.start()
    assert svc.ready.wait(10), svc.setup_error
    assert sorted(r[1] for r in svc.drain.deferred) == sorted([queued, lost])
    assert entered.wait(10)
    # the marker went through the queue behind the create; the sweep waits for that create
    assert _wait_for(lambda: svc.drain._arrived.is_set())
    assert not svc.drain.resolved.is_set()
    assert _status(env.db, lost) == "creating"
    gate.set()
    assert svc.drain.resolved.wait(10)
    assert svc.drain.how == "drained"
    assert _status(env.db, queued) == "available"
    assert _status(env.db, lost) == "error"
    assert svc.drain.moved == [("volume", lost, "error")]
    with env.db.reader() as session:
        assert "worker restarted" in repository.get(session, models.Volume, lost).status_reason


def test_clean_start_sends_no_marker(env):
    svc = env.make()
    svc.start()
    assert svc.ready.wait(10)
    assert svc.drain.resolved.is_set() and svc.drain.deferred == []
    assert svc.drain._thread is None


def _manager(env):
    return VolumeManager(env.conf, "fake", db=env.db,
                         driver=FakeDriver(None, "fake", host="node1@fake"),
                         quota=QuotaEngine(env.db, env.conf), notifier=MemoryNotifier())


class _Server:
    """A server that never delivers the marker (the broker lost the queue)."""

    dispatched = 0

    def wait_dispatched_before(self, count, timeout=None):
        return True


def test_without_the_marker_orphans_are_resolved_after_the_drain_timeout(env):
    manager = _manager(env)
    lost = _volume(env.db)
    report = manager.init_host(defer_orphans=True)
    assert report.deferred == [("volume", lost, "creating")] and report.orphans == []
    assert _status(env.db, lost) == "creating"
    other = rpc.get_transport(env.conf, url="inprocess://nobody-%s" % lost[:8])
    drain = volume_drain.QueueDrain(manager, report.deferred, transport=other, timeout=0.2)
    drain.start(_Server())
    drain.endpoint.recovery_drained(CTX, token="marker-of-an-earlier-start")
    assert not drain._arrived.is_set()
    assert drain.resolved.wait(10)
    assert drain.how == "timeout" and drain.moved == [("volume", lost, "error")]


def test_resolve_leaves_rows_that_moved_on(env):
    """A deferred row that was created, rescheduled (host cleared) or deleted meanwhile is
    not touched; deletes are never deferred (their idempotent flow runs at start)."""
    manager = _manager(env)
    done, moved, gone = _volume(env.db), _volume(env.db), _volume(env.db)
    deleting = _volume(env.db, status="deleting")
    report = manager.init_host(defer_orphans=True)
    assert sorted(r[1] for r in report.deferred) == sorted([done, moved, gone])
    assert _status(env.db, deleting) == "deleted"
    manager.create_volume(CTX, done)
    with env.db.writer() as session:
        repository.update(session, repository.get(session, models.Volume, moved), host=None)
        repository.soft_delete(session, repository.get(session, models.Volume, gone))
    assert recovery.resolve_orphans(manager, report.deferred) == []
    assert _status(env.db, done) == "available"
    assert _status(env.db, moved) == "creating"


def test_direct_init_host_still_resolves_orphans_at_once(env):
    """Without a queue (tools, tests) there is nothing to wait for."""
    manager = _manager(env)
    lost = _volume(env.db)
    report = manager.init_host()
    assert report.deferred == [] and report.orphans == [("volume", lost, "error")]
    assert _status(env.db, lost) == "error"


def test_orphaned_groups_and_group_snapshots_are_resolved_too(env):
    """Groups and group snapshots have no status_reason column: resolving their orphans must
    not fail (it once raised InvalidInput and left every deferred row of the backend
    transitional until the next start -- found by the crash-under-load harness)."""
    manager = _manager(env)
    with env.db.writer() as session:
        group = repository.create(session, models.Group, status="creating",
                                  project_id="p1", host="node1@fake#fake")
        updating = repository.create(session, models.Group, status="available",
                                     project_id="p1", host="node1@fake#fake")
        gsnap = repository.create(session, models.GroupSnapshot, status="creating",
                                  project_id="p1", group_id=updating.id)
        repository.update(session, updating, status="updating")
        ids = group.id, updating.id, gsnap.id
    lost = _volume(env.db)
    report = manager.init_host(defer_orphans=True)
    assert sorted(r[1] for r in report.deferred) == sorted([*ids, lost])
    moved = recovery.resolve_orphans(manager, report.deferred)
    assert sorted(moved) == sorted([("group", ids[0], "error"), ("group", ids[1], "error"),
                                    ("group_snapshot", ids[2], "error"),
                                    ("volume", lost, "error")])
    with env.db.reader() as session:
        assert [repository.get(session, m, i).status for m, i in (
            (models.Group, ids[0]), (models.Group, ids[1]),
            (models.GroupSnapshot, ids[2]))] == ["error", "error", "error"]


def test_a_lost_extend_gives_back_what_the_api_reserved(env):
    """An extend whose request was lost (row ``extending``, no flow): recovery moves the
    volume to ``error_extending`` and rolls back the API's reservation in the same
    transaction (found by the crash-under-load harness: it stayed reserved for a day)."""
    from blockmgr import quota as bm_quota

    manager = _manager(env)
    vid = _volume(env.db, status="extending")
    owner = bm_quota.request_owner("volume", vid, "extending")
    manager.quota.reserve(PROJECT, gigabytes=3, owner=owner)
    report = manager.init_host(defer_orphans=True)
    assert report.deferred == [("volume", vid, "extending")]
    assert manager.quota.reservations_of(owner) != []
    assert recovery.resolve_orphans(manager, report.deferred) == [
        ("volume", vid, "error_extending")]
    assert manager.quota.reservations_of(owner) == []
    assert manager.quota.get_usages(PROJECT)["gigabytes"]["reserved"] == 0
