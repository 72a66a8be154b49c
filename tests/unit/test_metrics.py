"""Prometheus metrics: real flows, RPC requests and collectors, scraped over HTTP.

Flow and RPC metrics live on the process's registry (``metrics.get()``), shared by every test
of the run, so flow assertions compare a scrape before with one after. Collector tests use a
registry of their own.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
import urllib.request
import uuid

import oslo_messaging
import pytest
from prometheus_client.parser import text_string_to_metric_families

from blockmgr import exception
from blockmgr import metrics
from blockmgr import quota_reconciler
from blockmgr import rpc
from blockmgr import rpc_inprocess
from blockmgr.flows import create_volume
from blockmgr.flows import faults
from blockmgr.quota import QuotaEngine
from blockmgr.volume.manager import VolumeManager

from tests.unit.test_manager import CTX, _volume, env  # noqa: F401  (fixture)

ACTION = create_volume.ACTION


def scrape(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.status == 200
        text = answer.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def task_counts(samples: dict, action: str) -> dict[str, float]:
    return {dict(labels)["task"]: v for (name, labels), v in samples.items()
            if name == "blockmgr_flow_task_duration_seconds_count"
            and dict(labels).get("action") == action}


@pytest.fixture
def endpoint():
    server = metrics.MetricsServer(metrics.get().registry, "127.0.0.1", 0)
    yield server
    server.stop()


class Crash(BaseException):
    """Tears the flow's thread down mid-task, as an interpreter exit would."""


# --- flows ----------------------------------------------------------------------------------

def test_flow_outcomes_and_task_durations_are_scraped(env, endpoint):
    before = scrape(endpoint.url)
    env.create_volume(CTX, _volume(env, size=1))
    failing = _volume(env, size=1)
    env.driver.inject_failure("create_volume",
                              exception.VolumeBackendAPIException(reason="boom"), times=1)
    with pytest.raises(exception.VolumeBackendAPIException):
        env.create_volume(CTX, failing, allow_reschedule=False)
    after = scrape(endpoint.url)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("blockmgr_flows_started_total", action=ACTION) == 2
    assert delta("blockmgr_flows_finished_total", action=ACTION, outcome="succeeded") == 1
    assert delta("blockmgr_flows_finished_total", action=ACTION, outcome="reverted") == 1
    assert delta("blockmgr_flows_in_flight", action=ACTION) == 0
    # Every task of the successful run was timed once at least (the failed run adds the
    # tasks it reached).
    counts_before, counts_after = task_counts(before, ACTION), task_counts(after, ACTION)
    for task in faults.task_names(create_volume.get_flow()):
        assert counts_after.get(task, 0) - counts_before.get(task, 0) >= 1, task
    assert (value(after, "process_cpu_seconds_total") > 0
            or ("process_virtual_memory_bytes", ()) in after)


def test_in_flight_gauge_while_a_flow_runs(env, endpoint):
    started, release = threading.Event(), threading.Event()

    def hold(_call):
        started.set()
        release.wait(30)
        return None   # no failure: the driver call then succeeds

    env.driver.inject_failure("create_volume", hold, times=1)
    vid = _volume(env)
    # Relative to before: a flow another test abandoned in this process stays counted.
    idle = value(scrape(endpoint.url), "blockmgr_flows_in_flight", action=ACTION)
    worker = threading.Thread(target=env.create_volume, args=(CTX, vid))
    worker.start()
    try:
        assert started.wait(30)
        running = scrape(endpoint.url)
    finally:
        release.set()
        worker.join(30)
    assert value(running, "blockmgr_flows_in_flight", action=ACTION) == idle + 1
    assert value(scrape(endpoint.url), "blockmgr_flows_in_flight", action=ACTION) == idle


def test_interrupted_flow_counts_as_resumed_at_restart(env, endpoint):
    before = scrape(endpoint.url)
    vid = _volume(env)
    env.driver.inject_failure("create_volume", Crash(), times=1)
    with pytest.raises(Crash):
        env.create_volume(CTX, vid)
    restarted = VolumeManager(env.conf, "fake", db=env.db, driver=env.driver,
                              quota=env.quota, notifier=env.notifier,
                              reschedule=env.reschedule)
    report = restarted.init_host()
    assert len(report.resumed) == 1
    after = scrape(endpoint.url)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("blockmgr_flows_started_total", action=ACTION) == 1
    assert delta("blockmgr_flows_resumed_total", action=ACTION) == 1
    assert delta("blockmgr_flows_finished_total", action=ACTION, outcome="interrupted") == 1
    assert delta("blockmgr_flows_finished_total", action=ACTION, outcome="succeeded") == 1
    assert delta("blockmgr_flows_in_flight", action=ACTION) == 0


# --- RPC ------------------------------------------------------------------------------------

class _Endpoint:
    target = oslo_messaging.Target(version="1.0")

    def ok(self, ctxt):
        return "ok"

    @oslo_messaging.expected_exceptions(exception.BlockmgrError)
    def missing(self, ctxt, volume_id):
        raise exception.VolumeNotFound(volume_id=volume_id)

    def broken(self, ctxt):
        raise ZeroDivisionError("a bug")


def test_rpc_requests_counted_by_method_and_outcome(conf, endpoint):
    url = "inprocess://metrics-%s" % uuid.uuid4().hex[:8]
    topic = "metrics-test-%s" % uuid.uuid4().hex[:8]
    transport = rpc.get_transport(conf, url)
    server = rpc.get_server(transport, topic, "s1", [_Endpoint()])
    server.start()
    try:
        client = rpc.get_client(transport, topic, server="s1", timeout=10)
        assert client.call(CTX, "ok") == "ok"
        assert client.call(CTX, "ok") == "ok"
        with pytest.raises(exception.VolumeNotFound):
            client.call(CTX, "missing", volume_id="v1")
        with pytest.raises(ZeroDivisionError):       # builtins are rebuilt by oslo
            client.call(CTX, "broken")
        with pytest.raises(Exception, match="no_such_method"):
            client.call(CTX, "no_such_method")
    finally:
        server.stop()
        server.wait()
        rpc_inprocess.reset()
    samples = scrape(endpoint.url)
    name = "blockmgr_rpc_requests_total"
    assert value(samples, name, topic=topic, method="ok", outcome="success", error="") == 2
    assert value(samples, name, topic=topic, method="missing", outcome="expected_error",
                 error="VolumeNotFound") == 1
    assert value(samples, name, topic=topic, method="broken", outcome="unexpected_error",
                 error="ZeroDivisionError") == 1
    assert value(samples, name, topic=topic, method="unknown", outcome="unexpected_error",
                 error="NoSuchMethod") == 1


# --- collectors -----------------------------------------------------------------------------

def test_capacity_from_cached_reports():
    own = metrics.Metrics(process_collectors=False)
    reports = [
        ("node1@lvm", {"pools": [
            {"pool_name": "vg0", "total_capacity_gb": 100, "free_capacity_gb": 40.5,
             "allocated_capacity_gb": 55},
            {"pool_name": "thin", "total_capacity_gb": "infinite",
             "free_capacity_gb": "unknown", "allocated_capacity_gb": 3}]}),
        ("node1@slow", None),   # not published yet
    ]
    server = metrics.MetricsServer(own.registry, "127.0.0.1", 0,
                                   collectors=[metrics.CapacityCollector(lambda: reports)])
    try:
        samples = scrape(server.url)
    finally:
        server.stop()
    # reported in GiB, exported in bytes (the base unit)
    assert value(samples, "blockmgr_pool_total_bytes", backend="node1@lvm",
                 pool="vg0") == 100 * 2 ** 30
    assert value(samples, "blockmgr_pool_free_bytes", backend="node1@lvm",
                 pool="vg0") == 40.5 * 2 ** 30
    assert value(samples, "blockmgr_pool_allocated_bytes", backend="node1@lvm",
                 pool="thin") == 3 * 2 ** 30
    assert value(samples, "blockmgr_pool_total_bytes", backend="node1@lvm",
                 pool="thin") == float("inf")
    assert ("blockmgr_pool_free_bytes",
            (("backend", "node1@lvm"), ("pool", "thin"))) not in samples
    assert not any(dict(labels).get("backend") == "node1@slow" for _n, labels in samples)
    # stop() unregistered the collector: a new server can register another one.
    assert own.registry.get_sample_value("blockmgr_pool_total_bytes",
                                         {"backend": "node1@lvm", "pool": "vg0"}) is None


def test_quota_reservations_outstanding_and_orphaned(sqlite_database, conf):
    quota = QuotaEngine(sqlite_database, conf)
    quota.reserve("p1", owner="running-flow", volumes=1, gigabytes=10)
    quota.reserve("p1", owner="finished-flow", gigabytes=5)
    quota.reserve("p2", gigabytes=-2, expire=3600)               # ownerless, not expired
    quota.reserve("p2", snapshots=1, expire=dt.datetime(2000, 1, 1))   # ownerless, expired
    own = metrics.Metrics(process_collectors=False)
    own.registry.register(metrics.QuotaCollector(
        sqlite_database, quota, lambda: lambda owner: owner == "running-flow"))
    get = own.registry.get_sample_value
    assert get("blockmgr_quota_scrape_error") == 0
    assert get("blockmgr_quota_reservations_outstanding", {"resource": "gigabytes"}) == 3
    assert get("blockmgr_quota_reservations_outstanding", {"resource": "volumes"}) == 1
    assert get("blockmgr_quota_reservations_outstanding", {"resource": "snapshots"}) == 1
    assert get("blockmgr_quota_reservations_outstanding", {"resource": "groups"}) == 0
    assert get("blockmgr_quota_reserved_outstanding", {"resource": "gigabytes"}) == 15
    assert get("blockmgr_quota_reservations_orphaned", {"resource": "gigabytes"}) == 1
    assert get("blockmgr_quota_reservations_orphaned", {"resource": "volumes"}) == 0
    assert get("blockmgr_quota_reservations_orphaned", {"resource": "snapshots"}) == 1
    assert quota_reconciler.reservation_totals(sqlite_database)["volumes"] == (1, 1)


def test_quota_collector_reports_a_failing_database(tmp_path, conf):
    from blockmgr.db.session import Database

    empty = Database("sqlite:///%s" % (tmp_path / "no-schema.sqlite"))   # no tables
    try:
        own = metrics.Metrics(process_collectors=False)
        own.registry.register(metrics.QuotaCollector(
            empty, QuotaEngine(empty, conf), lambda: lambda owner: True))
        assert own.registry.get_sample_value("blockmgr_quota_scrape_error") == 1
        assert own.registry.get_sample_value("blockmgr_quota_reservations_outstanding",
                                             {"resource": "volumes"}) is None
    finally:
        empty.dispose()


# --- serving --------------------------------------------------------------------------------

def test_serve_follows_the_options(conf):
    assert metrics.serve(conf, "volume_port") is None   # disabled by default
    conf.set_override("enabled", True, group="metrics")
    conf.set_override("scheduler_port", 0, group="metrics")
    server = metrics.serve(conf, "scheduler_port", metrics=metrics.Metrics())
    try:
        samples = scrape(server.url)
        assert ("blockmgr_quota_reconcile_runs_total", (("outcome", "ok"),)) not in samples
        assert any(name.startswith("process_") for name, _labels in samples)
    finally:
        server.stop()


def test_port_in_use_is_a_configuration_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(exception.ConfigurationError) as caught:
            metrics.MetricsServer(metrics.Metrics().registry, "127.0.0.1", port,
                                  option="volume_port")
    message = str(caught.value)
    assert "[metrics] volume_port" in message and str(port) in message


def test_api_routes_answer_metrics_without_a_redirect(env):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    env.create_volume(CTX, _volume(env))
    app = Starlette()
    app.router.routes.extend(metrics.api_routes())
    with TestClient(app) as client:
        for path in ("/metrics", "/metrics/"):
            answer = client.get(path, follow_redirects=False)
            assert answer.status_code == 200, (path, answer.status_code)
            assert 'blockmgr_flows_started_total{action="volume:create"}' in answer.text
            assert answer.headers["content-type"].startswith("text/plain")
        assert client.head("/metrics", follow_redirects=False).status_code == 200
        assert client.post("/metrics", follow_redirects=False).status_code == 405
        assert client.get("/metrics/x", follow_redirects=False).status_code == 404


def test_asgi_app_for_the_rest_api(env):
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.testclient import TestClient

    env.create_volume(CTX, _volume(env))
    app = Starlette(routes=[Mount("/metrics", app=metrics.asgi_app())])
    with TestClient(app) as client:
        answer = client.get("/metrics/")
    assert answer.status_code == 200
    assert 'blockmgr_flows_started_total{action="volume:create"}' in answer.text


# --- conventions ------------------------------------------------------------------------------

def _exposition(registry) -> list:
    """Every (family, sample name) of ``registry`` as a scraper sees it."""
    from prometheus_client import generate_latest

    return [(family, sample.name)
            for family in text_string_to_metric_families(generate_latest(registry).decode())
            for sample in family.samples]


def test_names_follow_the_prometheus_conventions(sqlite_database, conf):
    """Base units only (seconds, bytes), ``_total`` on every counter, no ``*_created``."""
    own = metrics.Metrics()
    own.record_reconcile(quota_reconciler.ReconcileReport(dry_run=False))
    own.registry.register(metrics.CapacityCollector(
        lambda: [("n1@lvm", {"pools": [{"pool_name": "p", "total_capacity_gb": 1,
                                        "free_capacity_gb": 1, "allocated_capacity_gb": 1,
                                        "provisioned_capacity_gb": 1}]})]))
    own.registry.register(metrics.QuotaCollector(
        sqlite_database, QuotaEngine(sqlite_database, conf), lambda: lambda owner: True))
    with metrics.FlowObserver(own, _FakeEngine()):
        pass
    own.child(own.rpc_requests, "t", "m", metrics.RPC_SUCCESS, "").inc()
    _one_api_request(own)
    exposed = _exposition(own.registry)
    names = {sample for _family, sample in exposed}
    assert "blockmgr_pool_total_bytes" in names
    assert {"blockmgr_api_requests_total", "blockmgr_api_request_duration_seconds_bucket",
            "blockmgr_flows_finished_total", "blockmgr_rpc_requests_total",
            "blockmgr_quota_reconcile_last_success_timestamp_seconds"} <= names
    for family, sample in exposed:
        assert not sample.endswith("_created"), sample
        assert not any(unit in sample for unit in ("gibibytes", "gigabytes", "_gb",
                                                     "_milliseconds", "_minutes")), sample
        if family.type == "counter":
            assert sample.endswith("_total"), sample
    # the process's own registry too
    assert not [s for _f, s in _exposition(metrics.get().registry) if s.endswith("_created")]


def _one_api_request(own) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    app = Starlette(routes=[Route("/items/{item_id}", lambda request: PlainTextResponse(""))])
    app.add_middleware(metrics.RequestMetricsMiddleware, metrics=own)
    with TestClient(app) as client:
        assert client.get("/items/7").status_code == 200


def test_api_request_families_exist_only_where_the_api_is_served():
    own = metrics.Metrics(process_collectors=False)
    assert not [s for _f, s in _exposition(own.registry) if s.startswith("blockmgr_api_")]
    _one_api_request(own)
    assert own.registry.get_sample_value(
        "blockmgr_api_requests_total",
        {"method": "GET", "route": "/items/{item_id}", "status": "200"}) == 1


def test_route_template_never_holds_a_raw_id():
    class Route:
        path = "/volumes/{volume_id}"

    scope = {"path": "/v3/pA/volumes/a%20b", "route": Route(),
             "path_params": {"project_id": "pA", "volume_id": "a b"}}
    assert metrics.route_template(scope) == "/v3/{project_id}/volumes/{volume_id}"
    assert metrics.route_template({"path": "/v3/pA/nothing"}) == metrics.UNMATCHED_ROUTE
    assert metrics.route_template({"path": "/metrics", "path_params": {}}) == "/metrics"


class _FakeEngine:
    """What :class:`metrics.FlowObserver` reads of a TaskFlow engine."""

    class storage:
        flow_meta = {"action": "volume:create"}
        flow_name = "volume:create"

        @staticmethod
        def get_flow_state():
            return "SUCCESS"

    class atom_notifier:
        @staticmethod
        def register(event, callback):
            pass

        @staticmethod
        def deregister(event, callback):
            pass


def test_reconcile_metrics_only_where_the_reconciler_ran():
    own = metrics.Metrics(process_collectors=False)
    get = own.registry.get_sample_value
    name = "blockmgr_quota_reconcile_last_success_timestamp_seconds"
    assert own.reconcile is None
    assert get(name) is None            # not exported: no alert on a process that never runs it
    assert get("blockmgr_quota_reconcile_runs_total", {"outcome": "ok"}) is None
    failed = quota_reconciler.ReconcileReport(dry_run=False)
    failed.error = "OperationalError: database is locked"
    own.record_reconcile(failed)
    assert get(name) == 0               # runs here, has not succeeded yet
    assert get("blockmgr_quota_reconcile_runs_total", {"outcome": "error"}) == 1
    own.record_reconcile(quota_reconciler.ReconcileReport(dry_run=False))
    assert get(name) > 1_000_000_000
    assert get("blockmgr_quota_reconcile_runs_total", {"outcome": "ok"}) == 1
