"""The volume worker service in-process: FakeDriver, SQLite, the in-process RPC transport.

Covers start-up order (setup retries, recovery before consuming), the endpoint over RPC
through ``VolumeAPI``, heartbeats and up/down, capacity reports to the schedulers, and
stopping with a grace period.
"""

from __future__ import annotations

import threading
import time
import uuid

import oslo_messaging
import pytest

from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr import rpc
from blockmgr import rpc_inprocess
from blockmgr import services
from blockmgr.conf import backend as backend_conf
from blockmgr.db import models
from blockmgr.db import repository
from blockmgr.notifications import MemoryNotifier
from blockmgr.quota import QuotaEngine
from blockmgr.testing.fake_driver import FakeDriver
from blockmgr.volume import rpcapi
from blockmgr.volume import service as volume_service
from blockmgr.volume.manager import VolumeManager

PROJECT = "p1"
CTX = bm_context.RequestContext(project_id=PROJECT, user_id="u1")
BACKEND = "fake"


class SchedulerEndpoint:
    """Stands in for the schedulers: records capability reports and reschedules."""

    target = oslo_messaging.Target(version="1.0")

    def __init__(self):
        self.reports, self.creates = [], []

    def update_service_capabilities(self, ctxt, service_name, host, capabilities, timestamp):
        self.reports.append((service_name, host, capabilities, timestamp))

    def create_volume(self, ctxt, volume_id, request_spec, filter_properties):
        self.creates.append((volume_id, request_spec, filter_properties))


@pytest.fixture
def env(conf, sqlite_database):
    url = "inprocess://svc-%s" % uuid.uuid4().hex[:8]
    conf.set_override("host", "node1")
    conf.set_override("connection", sqlite_database.url, group="database")
    conf.set_override("transport_url", url)
    conf.set_override("report_interval", 1)
    conf.set_override("service_down_time", 3)
    conf.set_override("driver_setup_retry_interval", 0.05)
    conf.set_override("driver_setup_retry_max_interval", 0.1)
    conf.register_opts(backend_conf.GENERIC_OPTS, group=BACKEND)
    conf.set_override("volume_driver", "blockmgr.testing.fake_driver.FakeDriver", group=BACKEND)
    transport = rpc.get_transport(conf)
    scheduler = SchedulerEndpoint()
    sched_server = rpc.get_server(transport, rpc.SCHEDULER_TOPIC, "sched1", [scheduler])
    sched_server.start()
    made = []

    def make(driver=None, **kwargs):
        svc = volume_service.BackendService(
            conf, BACKEND, db=sqlite_database, transport=transport,
            notifier=MemoryNotifier(), driver=driver or FakeDriver(None, BACKEND,
                                                                   host="node1@fake"),
            **kwargs)
        made.append(svc)
        return svc

    yield type("Env", (), {"conf": conf, "db": sqlite_database, "transport": transport,
                           "scheduler": scheduler, "make": staticmethod(make),
                           "api": rpcapi.VolumeAPI(transport, timeout=10)})
    for svc in made:
        svc.stop(grace=5)
    sched_server.stop()
    sched_server.wait()
    rpc_inprocess.reset()


def _volume(db, status="creating", size=1, host="node1@fake#fake"):
    """A row as the API leaves it (the API's quota is not modelled here)."""
    with db.writer() as session:
        row = repository.create(session, models.Volume, status=status, size=size, host=host,
                                project_id=PROJECT)
        return row.id


def _status(db, volume_id):
    with db.reader() as session:
        return repository.get(session, models.Volume, volume_id, read_deleted=True).status


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def _service_rows(db, down_time=3):
    with db.reader() as session:
        return services.list_services(session, down_time, binary=services.VOLUME_BINARY)


def test_start_serves_create_and_heartbeats_and_reports(env):
    svc = env.make()
    svc.start()
    assert svc.ready.wait(10), svc.setup_error
    [row] = _service_rows(env.db)
    assert row.up and row.host == "node1@fake" and row.topic == rpc.VOLUME_TOPIC
    assert row.disabled_reason is None and row.version == "1.1"
    vid = _volume(env.db, size=2)
    env.api.create_volume(CTX, "node1@fake#fake", vid, {}, {})
    assert _wait_for(lambda: _status(env.db, vid) == "available")
    assert _wait_for(lambda: env.scheduler.reports)
    service_name, host, caps, timestamp = env.scheduler.reports[0]
    assert (service_name, host) == ("volume", "node1@fake") and timestamp
    pool = caps["pools"][0]
    assert pool["pool_name"] == "fake" and "allocated_capacity_gb" in pool
    # a later report counts the new volume
    report = svc.publish_capabilities()
    assert report["pools"][0]["allocated_capacity_gb"] == 2
    # ... with what the driver class declares about extending attached volumes.
    assert env.api.get_capabilities(CTX, "node1@fake") == dict(report,
                                                               online_extend_support=False)


def test_heartbeat_keeps_it_up_and_a_stopped_service_goes_down(env):
    svc = env.make()
    svc.start()
    assert svc.ready.wait(10)
    with env.db.reader() as session:
        first = session.get(models.Service, svc.service_id).report_count
    assert _wait_for(lambda: _report_count(env.db, svc.service_id) > first, timeout=5)
    svc.stop(grace=5)
    later = models.utcnow().replace(microsecond=0)
    with env.db.reader() as session:
        row = session.get(models.Service, svc.service_id)
        assert services.is_up(row, 3, now=later)
        import datetime as dt
        assert not services.is_up(row, 3, now=later + dt.timedelta(seconds=10))


def _report_count(db, service_id):
    with db.reader() as session:
        return session.get(models.Service, service_id).report_count


def test_initialize_and_terminate_connection_over_rpc(env):
    svc = env.make()
    svc.start()
    assert svc.ready.wait(10)
    vid = _volume(env.db)
    env.api.create_volume(CTX, "node1@fake", vid, {}, {})
    assert _wait_for(lambda: _status(env.db, vid) == "available")
    connector = {"host": "client1", "initiator": "iqn.x"}
    info = env.api.initialize_connection(CTX, "node1@fake#fake", vid, connector)
    assert info["driver_volume_type"] == "fake"
    assert info["data"]["volume_id"] == vid and info["data"]["access_mode"] == "rw"
    assert svc.driver.connections["volume-%s" % vid] == [connector]
    env.api.terminate_connection(CTX, "node1@fake", vid, connector)
    assert svc.driver.connections["volume-%s" % vid] == []


def test_call_errors_reach_the_caller_typed(env):
    svc = env.make()
    svc.start()
    assert svc.ready.wait(10)
    with pytest.raises(exception.VolumeNotFound) as missing:
        env.api.initialize_connection(CTX, "node1@fake", "no-such-volume", {})
    assert type(missing.value) is exception.VolumeNotFound   # local_error: no *_Remote
    creating = _volume(env.db, status="creating")
    with pytest.raises(exception.InvalidVolume, match="only available or in-use"):
        env.api.initialize_connection(CTX, "node1@fake", creating, {})
    elsewhere = _volume(env.db, status="available", host="node2@fake")
    with pytest.raises(exception.InvalidVolume, match="not on this backend"):
        env.api.initialize_connection(CTX, "node1@fake", elsewhere, {})
    with pytest.raises(exception.InvalidInput):
        env.api.initialize_connection(CTX, "node1@fake", creating, "not-a-dict")
    with pytest.raises(exception.InvalidInput):
        env.api.create_volume(CTX, None, creating, {}, {})


def test_driver_attach_failure_removes_the_export(env):
    svc = env.make()
    svc.start()
    assert svc.ready.wait(10)
    vid = _volume(env.db)
    env.api.create_volume(CTX, "node1@fake", vid, {}, {})
    assert _wait_for(lambda: _status(env.db, vid) == "available")
    svc.driver.inject_failure("initialize_connection", RuntimeError("port down"), times=1)
    with pytest.raises(exception.VolumeBackendAPIException, match="port down"):
        env.api.initialize_connection(CTX, "node1@fake", vid, {"host": "c"})
    assert svc.driver.calls_to("remove_export")


def test_manageable_listings_over_rpc(env):
    svc = env.make()
    svc.start()
    assert svc.ready.wait(10)
    svc.driver.seed_foreign_volume(3 * 1024 ** 3 + 1, name="legacy-1")
    listing = env.api.get_manageable_volumes(CTX, "node1@fake", sort_keys=["size"])
    assert [(e["reference"], e["size"], e["safe_to_manage"]) for e in listing] == [
        ({"source-name": "legacy-1"}, 4, True)]
    assert env.api.get_manageable_snapshots(CTX, "node1@fake") == []
    with pytest.raises(exception.InvalidInput):
        env.api.get_manageable_volumes(CTX, "node1@fake", sort_keys=["colour"])


def test_failing_driver_setup_keeps_the_backend_down_then_recovers(env):
    driver = FakeDriver(None, BACKEND, host="node1@fake")
    driver.inject_failure("check_for_setup_error",
                          exception.VolumeBackendAPIException(reason="array offline"), times=3)
    svc = env.make(driver=driver)
    svc.start()
    assert _wait_for(lambda: svc.setup_attempts >= 1 and _service_rows(env.db))
    [row] = _service_rows(env.db)
    assert not row.up
    assert svc.ready.wait(10)
    assert svc.setup_attempts == 4
    [row] = _service_rows(env.db)
    assert row.up and row.disabled_reason is None


def test_setup_out_of_retries_stays_down_with_the_reason(env):
    env.conf.set_override("driver_setup_retries", 1)
    driver = FakeDriver(None, BACKEND, host="node1@fake")
    driver.inject_failure("do_setup", exception.ConfigurationError(
        section="fake", option="x", reason="bad"))
    svc = env.make(driver=driver)
    svc.start()
    assert _wait_for(lambda: svc._thread is not None and not svc._thread.is_alive())
    assert not svc.ready.is_set() and svc.setup_attempts == 2
    [row] = _service_rows(env.db)
    assert not row.up and "driver setup failed (attempt 2)" in row.disabled_reason
    assert "bad" in row.disabled_reason
    # and nothing consumes: a call times out rather than reaching a half-set-up backend
    api = rpcapi.VolumeAPI(env.transport, timeout=0.3)
    with pytest.raises(oslo_messaging.MessagingTimeout):
        api.get_capabilities(CTX, "node1@fake")


def test_recovery_runs_before_the_server_consumes(env):
    order = []

    class RecordingManager(VolumeManager):
        def init_host(self, **kwargs):
            order.append(("init_host", svc.server))
            return super().init_host(**kwargs)

    def factory(driver):
        return RecordingManager(env.conf, BACKEND, db=env.db, driver=driver,
                                quota=QuotaEngine(env.db, env.conf), notifier=MemoryNotifier())

    # a volume left "creating" by a dead worker, without a flow and without a request in
    # the ledger: its recovery, before the server exists, moves it to error
    orphan = _volume(env.db)
    svc = env.make(manager_factory=factory)
    svc.start()
    assert svc.ready.wait(10)
    assert order == [("init_host", None)]
    assert _status(env.db, orphan) == "error"


def test_stop_waits_for_running_requests_within_grace(env):
    svc = env.make()
    svc.start()
    assert svc.ready.wait(10)
    gate = threading.Event()
    svc.driver.inject_failure("create_volume", lambda call: gate.wait(10) and None)
    vid = _volume(env.db)
    env.api.create_volume(CTX, "node1@fake", vid, {}, {})
    assert _wait_for(lambda: svc.server.busy == 1)
    threading.Timer(0.2, gate.set).start()
    assert svc.stop(grace=5) is True
    assert _status(env.db, vid) == "available"


def test_stop_gives_up_after_grace_and_leaves_the_flow_persisted(env):
    svc = env.make()
    svc.start()
    assert svc.ready.wait(10)
    gate = threading.Event()
    svc.driver.inject_failure("create_volume", lambda call: gate.wait(10) and None)
    vid = _volume(env.db)
    env.api.create_volume(CTX, "node1@fake", vid, {}, {})
    assert _wait_for(lambda: svc.server.busy == 1)
    try:
        assert svc.stop(grace=0.2) is False
        assert svc.manager.runner.backend.unfinished_flow_uuids() != set()
    finally:
        gate.set()


def test_daemon_requires_a_backend(conf, sqlite_database):
    url = "inprocess://d-%s" % uuid.uuid4().hex[:8]
    conf.set_override("connection", sqlite_database.url, group="database")
    conf.set_override("transport_url", url)
    daemon = volume_service.VolumeDaemon(conf, db=sqlite_database,
                                         notifier=MemoryNotifier())
    with pytest.raises(exception.ConfigurationError, match="enabled_backends"):
        daemon.start()
    rpc_inprocess.reset()


def test_manage_service_and_resource_listings(env, capsys):
    import argparse
    import io

    from blockmgr.cmd import manage_resources, manage_service

    svc = env.make()
    svc.start()
    assert svc.ready.wait(10)
    vid = _volume(env.db, status="available", size=3)
    out = io.StringIO()
    args = argparse.Namespace(binary=None, host="node1", format="table")
    assert manage_service.list_services(env.conf, args, out=out) == 0
    [header, line] = out.getvalue().splitlines()
    assert header.split()[:3] == ["BINARY", "HOST", "STATE"]
    assert line.split()[:4] == ["blockmgr-volume", "node1@fake", "up", "enabled"]
    out = io.StringIO()
    args = argparse.Namespace(kind="volume", project_id=PROJECT, status=None,
                              host="node1@fake", format="json")
    assert manage_resources.list_resources(env.conf, args, out=out) == 0
    import json
    [row] = json.loads(out.getvalue())
    assert (row["id"], row["status"], row["size"]) == (vid, "available", 3)
    out = io.StringIO()
    args = argparse.Namespace(host=None, all=False, format="table")
    assert manage_resources.list_flows(env.conf, args, out=out) == 0
    assert "No unfinished flows." in out.getvalue()
    with pytest.raises(exception.FlowNotFound):
        manage_resources.show_flow(env.conf, argparse.Namespace(flow_id="nope",
                                                                format="table"))


def test_a_backend_publishes_its_notifications_as_volume_host_at_backend(env):
    notifier = MemoryNotifier()
    svc = volume_service.BackendService(env.conf, BACKEND, db=env.db,
                                        transport=env.transport, notifier=notifier,
                                        driver=FakeDriver(None, BACKEND, host="node1@fake"))
    svc.notifier.info(CTX, "volume.create.start", {"volume_id": "v"})
    assert notifier.events[-1][1] == "volume.create.start"
    assert notifier.publishers[-1] == "volume.node1@fake"
