"""Start-up path of ``blockmgr-volume``: native threads only, database pool sized to the
daemon's concurrency, the requests of the ledger run at start whatever happened to their
messages (``blockmgr.ledger``), resources without a flow or a request resolved."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest

from blockmgr import conf as bm_conf
from blockmgr import context as bm_context
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.db import requests as db_requests
from blockmgr.notifications import MemoryNotifier
from blockmgr.quota import QuotaEngine
from blockmgr.testing.fake_driver import FakeDriver
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


# --- the ledger at start: every accepted request runs, whatever became of its message -----
# (the service runs on the in-process broker; a request "lost" here has a row and no message)

CTX = bm_context.RequestContext(project_id="p1", user_id="u1")
HOST = "node1@fake"


def _request(db, volume_id, *, action="create_volume", target=HOST, claimed_by=None,
             **arguments):
    arguments = arguments or {"volume_id": volume_id, "request_spec": {},
                              "filter_properties": {}}
    with db.writer() as session:
        request_id = db_requests.add(session, kind="volume", resource_id=volume_id,
                                     action=action, arguments=arguments,
                                     context=CTX.to_dict(), target=target)
        if claimed_by:
            assert db_requests.claim(session, request_id, claimed_by, 3600)
    return request_id


def _request_state(db, request_id):
    with db.reader() as session:
        return db_requests.get(session, request_id).state


def test_a_request_whose_message_was_lost_runs_at_start(env):
    """The row says ``creating`` and the ledger holds its request, but no message exists
    (the worker died holding it, or the broker dropped it): the start runs it."""
    lost = _volume(env.db)
    request_id = _request(env.db, lost)
    svc = env.make()
    svc.start()
    assert svc.ready.wait(10), svc.setup_error
    assert _wait_for(lambda: _status(env.db, lost) == "available")
    assert _wait_for(lambda: _request_state(env.db, request_id) == "done")


def test_claims_of_an_earlier_process_of_this_worker_are_taken_back_at_start(env):
    """Killed while holding a claim (an hour long here): the restarted worker does not
    wait for it to expire; its name says the claimant is its own dead predecessor."""
    held = _volume(env.db)
    request_id = _request(env.db, held, claimed_by=HOST + "/deadprocess1")
    svc = env.make()
    svc.start()
    assert svc.ready.wait(10), svc.setup_error
    assert _wait_for(lambda: _status(env.db, held) == "available")
    assert _request_state(env.db, request_id) == "done"


def test_a_live_claim_of_another_worker_is_left_alone(env):
    other = _volume(env.db)
    request_id = _request(env.db, other, claimed_by="node2@fake/alive")
    svc = env.make()
    svc.start()
    assert svc.ready.wait(10), svc.setup_error
    assert svc.ledger.sweep(svc._ring) == 0
    assert _status(env.db, other) == "creating"
    assert _request_state(env.db, request_id) == "claimed"


def test_a_duplicate_or_redelivered_message_runs_nothing_twice(env):
    """The same request rung three times (a duplicate cast, a redelivery after its flow
    finished): one flow, one driver create, one quota commit."""
    driver = FakeDriver(None, "fake", host=HOST)
    svc = env.make(driver=driver)
    svc.start()
    assert svc.ready.wait(10), svc.setup_error
    vid = _volume(env.db)
    request_id = _request(env.db, vid)
    arguments = {"volume_id": vid, "request_spec": {}, "filter_properties": {}}
    for _ in range(3):
        env.api.ring(CTX, HOST, "create_volume", arguments, request_id)
    assert _wait_for(lambda: _request_state(env.db, request_id) == "done")
    env.api.ring(CTX, HOST, "create_volume", arguments, request_id)   # after it finished
    env.api.get_capabilities(CTX, HOST)        # a call behind the casts: they were served
    assert _status(env.db, vid) == "available"
    assert len(driver.calls_to("create_volume")) == 1
    with env.db.reader() as session:
        assert db_requests.get(session, request_id).attempts == 1


def test_a_stopping_worker_leaves_requests_it_did_not_start_pending(env):
    svc = env.make()
    svc.start()
    assert svc.ready.wait(10), svc.setup_error
    svc.ledger.stop()     # what stop() does first: no new claims
    vid = _volume(env.db)
    request_id = _request(env.db, vid)
    env.api.ring(CTX, HOST, "create_volume",
                 {"volume_id": vid, "request_spec": {}, "filter_properties": {}}, request_id)
    env.api.get_capabilities(CTX, HOST)
    assert _status(env.db, vid) == "creating"
    assert _request_state(env.db, request_id) == "pending"
    svc.stop(grace=5)
    again = env.make()
    again.start()
    assert again.ready.wait(10), again.setup_error
    assert _wait_for(lambda: _status(env.db, vid) == "available")


def _manager(env):
    return VolumeManager(env.conf, "fake", db=env.db,
                         driver=FakeDriver(None, "fake", host=HOST),
                         quota=QuotaEngine(env.db, env.conf), notifier=MemoryNotifier())


def test_a_row_with_an_open_request_is_no_orphan(env):
    manager = _manager(env)
    waiting = _volume(env.db)
    _request(env.db, waiting)
    report = manager.init_host()
    assert report.orphans == []
    assert _status(env.db, waiting) == "creating"


def test_a_row_without_flow_or_request_moves_to_its_error_status(env):
    manager = _manager(env)
    lost = _volume(env.db)
    report = manager.init_host()
    assert report.orphans == [("volume", lost, "error")]
    with env.db.reader() as session:
        assert "without a flow or a request" in repository.get(
            session, models.Volume, lost).status_reason


def test_orphaned_groups_and_group_snapshots_are_resolved_too(env):
    """Groups and group snapshots have no status_reason column: resolving their orphans must
    not fail."""
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
    report = manager.init_host()
    assert sorted(report.orphans) == sorted([("group", ids[0], "error"),
                                             ("group", ids[1], "error"),
                                             ("group_snapshot", ids[2], "error"),
                                             ("volume", lost, "error")])
    with env.db.reader() as session:
        assert [repository.get(session, m, i).status for m, i in (
            (models.Group, ids[0]), (models.Group, ids[1]),
            (models.GroupSnapshot, ids[2]))] == ["error", "error", "error"]


def test_a_lost_extend_gives_back_what_the_api_reserved(env):
    """An extend without a flow or a request (row ``extending``): recovery moves the volume
    to ``error_extending`` and rolls back the API's reservation in the same transaction."""
    from blockmgr import quota as bm_quota

    manager = _manager(env)
    vid = _volume(env.db, status="extending")
    owner = bm_quota.request_owner("volume", vid, "extending")
    manager.quota.reserve(PROJECT, gigabytes=3, owner=owner)
    report = manager.init_host()
    assert report.orphans == [("volume", vid, "error_extending")]
    assert manager.quota.reservations_of(owner) == []
    assert manager.quota.get_usages(PROJECT)["gigabytes"]["reserved"] == 0
