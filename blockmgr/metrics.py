"""Prometheus metrics of one blockmgr process: what they count, and how they are served.

One :class:`Metrics` per process (:func:`get`), on a registry of its own rather than
prometheus_client's global default: only blockmgr's families (and this process's CPU/memory)
are exposed, and nothing a library registers on the default registry can collide with them.
The metric names, labels and meanings are listed in ``docs/metrics.md``. They follow
Prometheus's conventions: base units (seconds, bytes), ``_total`` on counters, and no
``*_created`` series (:func:`prometheus_client.disable_created_metrics`, process-wide, when
this module is imported: they double the series count and no blockmgr alert or dashboard
reads them).

Where the numbers come from:

* flows -- :class:`FlowObserver`, entered around ``engine.run()`` by
  :class:`blockmgr.flows.engine.FlowRunner`: start/resume/finish counters, the in-flight
  gauge, and per-task execute durations from TaskFlow's atom notifier (three callbacks
  registered per run, two notifications per task; no database access);
* REST API requests -- :class:`RequestMetricsMiddleware` (by method, route template and
  status; registered only in a process serving the API);
* RPC requests -- :func:`counting_dispatch`, wrapped around the oslo.messaging dispatcher of
  every :class:`blockmgr.rpc.BoundedRPCServer` (volume workers and schedulers alike);
* backend capacity -- :class:`CapacityCollector`, reading the capacity reports the volume
  worker last published (no driver call on scrape);
* quota reservations -- :class:`QuotaCollector`, two cheap queries per scrape;
* the quota reconciler -- :meth:`Metrics.record_reconcile`; its families exist only in a
  process that has run it (a scheduler, from its first reconcile on), so no other process
  exports a ``last_success`` timestamp of 0 that an alert would take for a stuck reconciler.

Served by :class:`MetricsServer` (``[metrics]`` options, the daemons; with ``GET
/healthcheck`` next to ``/metrics``, :mod:`blockmgr.health`) or added to an ASGI app with
:func:`api_routes` (the REST API: ``GET /metrics``, no redirect).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Callable, Iterable

import prometheus_client
from prometheus_client import core as prom_core
from taskflow import states as tf_states

from blockmgr import exception

LOG = logging.getLogger(__name__)

prometheus_client.disable_created_metrics()

#: Bytes in one GiB: drivers report capacity in GiB, the metrics are in bytes.
GIB = 1024 ** 3

#: Task execute durations span a quick DB update to a long data copy.
TASK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                30.0, 60.0, 300.0, 900.0, float("inf"))

#: ``outcome`` label of ``blockmgr_flows_finished_total``.
SUCCEEDED, REVERTED, FAILED, INTERRUPTED = "succeeded", "reverted", "failed", "interrupted"
#: ``outcome`` label of ``blockmgr_rpc_requests_total``.
RPC_SUCCESS, RPC_EXPECTED, RPC_UNEXPECTED = "success", "expected_error", "unexpected_error"


class Metrics:
    """The metric families of one process, on ``registry`` (default: a new one)."""

    def __init__(self, registry: prometheus_client.CollectorRegistry | None = None, *,
                 process_collectors: bool = True):
        self.registry = registry = registry or prometheus_client.CollectorRegistry()
        if process_collectors:
            prometheus_client.ProcessCollector(registry=registry)
            prometheus_client.PlatformCollector(registry=registry)
        self.flows_started = prometheus_client.Counter(
            "blockmgr_flows_started", "Flows launched, by action (operation).",
            ["action"], registry=registry)
        self.flows_resumed = prometheus_client.Counter(
            "blockmgr_flows_resumed",
            "Interrupted flows picked up again after a restart, by action (whether they "
            "then ran on or reverted).", ["action"], registry=registry)
        self.flows_finished = prometheus_client.Counter(
            "blockmgr_flows_finished",
            "Flow runs that ended, by action and outcome: succeeded, reverted (the "
            "operation failed and was undone), failed (the revert itself failed; the "
            "flow stays in its logbook for an operator) or interrupted (the thread was "
            "torn down mid-flow, e.g. at exit; the flow resumes at the next start).",
            ["action", "outcome"], registry=registry)
        self.flows_in_flight = prometheus_client.Gauge(
            "blockmgr_flows_in_flight", "Flows running in this process now, by action.",
            ["action"], registry=registry)
        self.task_duration = prometheus_client.Histogram(
            "blockmgr_flow_task_duration_seconds",
            "Wall-clock time of one task's execute, by flow action and task name (failed "
            "executes included).", ["action", "task"], buckets=TASK_BUCKETS,
            registry=registry)
        self.rpc_requests = prometheus_client.Counter(
            "blockmgr_rpc_requests",
            "RPC requests served, by topic, method and outcome (success, expected_error: "
            "a blockmgr error the caller is told about, unexpected_error: a bug or an "
            "unhandled failure); error is the exception class.",
            ["topic", "method", "outcome", "error"], registry=registry)
        # The quota reconciler's families: registered by the first record_reconcile().
        self._reconcile: _ReconcileMetrics | None = None
        self._reconcile_lock = threading.Lock()
        # The REST API's request families: registered by RequestMetricsMiddleware.
        self._http: _HttpMetrics | None = None
        # labels() takes a lock and builds a tuple; flows ask for the same few children
        # over and over, so they are kept here (dict reads need no lock).
        self._children: dict[tuple, object] = {}

    def child(self, metric, *labels):
        key = (id(metric),) + labels
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def observe_flow(self, engine, resumed: bool = False) -> "FlowObserver":
        return FlowObserver(self, engine, resumed)

    @property
    def reconcile(self) -> "_ReconcileMetrics | None":
        """The quota reconciler's families, None until this process has run it."""
        return self._reconcile

    def record_reconcile(self, report) -> None:
        """Count what a :class:`blockmgr.quota_reconciler.ReconcileReport` fixed.

        The first call registers the reconciler's families: until then (and in a process
        that never reconciles) none of them is exported. After a first failed run
        ``blockmgr_quota_reconcile_last_success_timestamp_seconds`` is 0: the reconciler
        runs here and has not succeeded yet.
        """
        families = self._reconcile
        if families is None:
            with self._reconcile_lock:
                if self._reconcile is None:
                    self._reconcile = _ReconcileMetrics(self.registry)
                families = self._reconcile
        if report.error is not None:
            families.runs.labels("error").inc()
            return
        families.runs.labels("ok").inc()
        for resource, count in report.released_by_resource().items():
            families.released.labels(resource).inc(count)
        for drift in report.drifts:
            families.fixed.labels(drift.resource, drift.field).inc()
        families.last_success.set(time.time())


class _ReconcileMetrics:
    """The quota reconciler's families on ``registry``."""

    def __init__(self, registry):
        self.runs = prometheus_client.Counter(
            "blockmgr_quota_reconcile_runs",
            "Quota reconciler runs, by outcome (ok, error).", ["outcome"], registry=registry)
        self.released = prometheus_client.Counter(
            "blockmgr_quota_reconcile_released_reservations",
            "Reservations the quota reconciler released because their owner flow was "
            "finished or gone (or, ownerless, expired), by resource.",
            ["resource"], registry=registry)
        self.fixed = prometheus_client.Counter(
            "blockmgr_quota_reconcile_usage_corrections",
            "Usage values the quota reconciler corrected, by resource and field "
            "(in_use, reserved).", ["resource", "field"], registry=registry)
        self.last_success = prometheus_client.Gauge(
            "blockmgr_quota_reconcile_last_success_timestamp_seconds",
            "Unix time the quota reconciler of this process last completed (0: it ran "
            "but has not succeeded yet).", registry=registry)


_process_metrics: Metrics | None = None
_process_lock = threading.Lock()


def get() -> Metrics:
    """This process's :class:`Metrics` (created at first use)."""
    global _process_metrics
    found = _process_metrics
    if found is None:
        with _process_lock:
            if _process_metrics is None:
                _process_metrics = Metrics()
            found = _process_metrics
    return found


# --- flows ------------------------------------------------------------------------------------

class FlowObserver:
    """Counts one flow run and times its tasks; a context manager around ``engine.run()``.

    The outcome is read from the flow state TaskFlow leaves behind: SUCCESS, REVERTED, or
    anything else (a failed revert) as ``failed``; a ``BaseException`` that is not an
    ``Exception`` (interpreter exit) leaves the flow unfinished: ``interrupted``.
    """

    __slots__ = ("_metrics", "_engine", "_action", "_resumed", "_started", "_notifier")

    _EVENTS = (tf_states.RUNNING, tf_states.SUCCESS, tf_states.FAILURE)

    def __init__(self, metrics: Metrics, engine, resumed: bool = False):
        self._metrics = metrics
        self._engine = engine
        self._action = str(engine.storage.flow_meta.get("action") or engine.storage.flow_name)
        self._resumed = resumed
        self._started: dict[str, float] = {}
        self._notifier = engine.atom_notifier

    def __enter__(self):
        m, action = self._metrics, self._action
        m.child(m.flows_resumed if self._resumed else m.flows_started, action).inc()
        m.child(m.flows_in_flight, action).inc()
        for event in self._EVENTS:
            self._notifier.register(event, self._on_task)
        return self

    def __exit__(self, exc_type, exc, tb):
        m, action = self._metrics, self._action
        for event in self._EVENTS:
            self._notifier.deregister(event, self._on_task)
        m.child(m.flows_in_flight, action).dec()
        if exc_type is None:
            outcome = SUCCEEDED
        elif not issubclass(exc_type, Exception):
            outcome = INTERRUPTED
        elif self._engine.storage.get_flow_state() == tf_states.REVERTED:
            outcome = REVERTED
        else:
            outcome = FAILED
        m.child(m.flows_finished, action, outcome).inc()
        return False

    def _on_task(self, state, details):
        name = details.get("task_name")
        if name is None:    # a retry atom
            return
        if state == tf_states.RUNNING:
            self._started[name] = time.perf_counter()
            return
        started = self._started.pop(name, None)
        if started is not None:   # None: the task was already running before a resume
            m = self._metrics
            m.child(m.task_duration, self._action, name).observe(
                time.perf_counter() - started)


def observe_flow(engine, resumed: bool = False) -> FlowObserver:
    """:class:`FlowObserver` on this process's metrics."""
    return FlowObserver(get(), engine, resumed)


# --- RPC --------------------------------------------------------------------------------------

def counting_dispatch(dispatch: Callable, topic: str, metrics: Metrics | None = None):
    """Wrap an oslo.messaging dispatcher's ``dispatch(incoming)`` to count each request by
    method and outcome. Expected errors arrive wrapped in oslo's ``ExpectedException``
    (the class counted is the wrapped one); an unknown method is counted as ``unknown``
    so a bad client cannot grow the label set."""
    from oslo_messaging.rpc import dispatcher as oslo_dispatcher

    metrics = metrics or get()

    def count(method, outcome, error):
        metrics.child(metrics.rpc_requests, topic, method, outcome, error).inc()

    def dispatch_counted(incoming):
        method = str(incoming.message.get("method"))
        try:
            result = dispatch(incoming)
        except oslo_dispatcher.ExpectedException as exc:
            count(method, RPC_EXPECTED, exc.exc_info[0].__name__)
            raise
        except oslo_dispatcher.NoSuchMethod:
            count("unknown", RPC_UNEXPECTED, "NoSuchMethod")
            raise
        except Exception as exc:
            count(method, RPC_UNEXPECTED, type(exc).__name__)
            raise
        count(method, RPC_SUCCESS, "")
        return result

    return dispatch_counted


# --- REST API requests ------------------------------------------------------------------------

#: Request durations on the REST API: most take a few database round trips; a create waits
#: for the scheduler's answer.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                float("inf"))
#: ``method`` label values; any other method is counted as ``other``.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: ``route`` label of a request no route matched (unknown path, or refused before routing:
#: authentication, a malformed microversion or URL).
UNMATCHED_ROUTE = "unmatched"


class _HttpMetrics:
    """The REST API's request families on ``registry``."""

    LABELS = ["method", "route", "status"]

    def __init__(self, registry):
        self.requests = prometheus_client.Counter(
            "blockmgr_api_requests",
            "REST API requests answered, by method, route template (e.g. "
            "/v3/{project_id}/volumes/{volume_id}; 'unmatched' when no route took the "
            "request) and HTTP status.", self.LABELS, registry=registry)
        self.duration = prometheus_client.Histogram(
            "blockmgr_api_request_duration_seconds",
            "Time from a REST API request's arrival to the end of its response, by "
            "method, route template and HTTP status.", self.LABELS, buckets=HTTP_BUCKETS,
            registry=registry)


def _http_metrics(metrics: Metrics) -> _HttpMetrics:
    families = metrics._http
    if families is None:
        with metrics._reconcile_lock:
            families = metrics._http
            if families is None:
                families = metrics._http = _HttpMetrics(metrics.registry)
    return families


def route_template(scope) -> str:
    """The route template of a routed request, e.g. ``/v3/{project_id}/volumes/{volume_id}``
    for ``/v3/pA/volumes/a1``; :data:`UNMATCHED_ROUTE` when no route took it.

    FastAPI leaves the matched route (``scope["route"]``, whose ``path`` is the template
    inside its router, without the prefix it was included under) and the path parameters
    in the scope. The prefix is the request path's leading segments, each one that holds a
    path parameter's value written as ``{name}``; a route without a route object (a plain
    Starlette route, e.g. ``/metrics``) is the request path written the same way.
    """
    from urllib.parse import unquote

    params = scope.get("path_params")
    route = scope.get("route")
    if params is None and route is None:
        return UNMATCHED_ROUTE
    names = {str(value): "{%s}" % name for name, value in (params or {}).items()}
    segments = (scope.get("path") or "").split("/")
    inner = getattr(route, "path", None)
    if inner:
        keep = len(segments) - len(inner.split("/")) + 1
        if keep < 1:
            return inner
        prefix = "/".join(names.get(unquote(seg), seg) for seg in segments[:keep])
        return prefix + inner
    return "/".join(names.get(unquote(seg), seg) for seg in segments)


class RequestMetricsMiddleware:
    """ASGI middleware counting and timing every HTTP request of the REST API by method,
    route template and status (``blockmgr_api_requests_total``,
    ``blockmgr_api_request_duration_seconds``). The route is the template the router
    matched, never the raw path, so ids do not grow the label set. Registered outermost
    (``app.add_middleware(metrics.RequestMetricsMiddleware)`` after the others), it also sees
    the requests authentication or validation refused. A request whose handler raised is
    counted with status 500. The families exist only in a process that serves the API."""

    def __init__(self, app, metrics: Metrics | None = None):
        self.app = app
        self._metrics = metrics or get()
        self._families = _http_metrics(self._metrics)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_counted(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            route = route_template(scope)
            method = scope.get("method", "")
            labels = (method if method in HTTP_METHODS else "other", route, str(status))
            m, families = self._metrics, self._families
            m.child(families.requests, *labels).inc()
            m.child(families.duration, *labels).observe(time.perf_counter() - started)


# --- collectors ---------------------------------------------------------------------------

_POOL_FIELDS = (("total_capacity_gb", "blockmgr_pool_total_bytes",
                 "Pool size reported by the driver, bytes (+Inf: 'infinite')."),
                ("free_capacity_gb", "blockmgr_pool_free_bytes",
                 "Free space reported by the driver, bytes (+Inf: 'infinite')."),
                ("allocated_capacity_gb", "blockmgr_pool_allocated_bytes",
                 "Bytes of the volumes this worker placed in the pool."),
                ("provisioned_capacity_gb", "blockmgr_pool_provisioned_bytes",
                 "Bytes provisioned in the pool as reported by the driver."))


def _capacity_value(value) -> float | None:
    """A capacity report's GiB figure in bytes."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) * GIB
    if isinstance(value, str) and value.lower() == "infinite":
        return float("inf")
    return None   # 'unknown', missing or junk: no sample rather than a wrong one


class CapacityCollector:
    """Per-pool capacity from the reports the worker last published.

    :param reports: returns ``[(backend host, capacity report or None), ...]``; a backend
        that has not published yet yields no pool samples.
    """

    def __init__(self, reports: Callable[[], Iterable[tuple[str, dict | None]]]):
        self._reports = reports

    def collect(self):
        families = {field: prom_core.GaugeMetricFamily(name, doc, labels=["backend", "pool"])
                    for field, name, doc in _POOL_FIELDS}
        for backend, report in self._reports():
            for pool in (report or {}).get("pools") or ():
                for field, _name, _doc in _POOL_FIELDS:
                    value = _capacity_value(pool.get(field))
                    if value is not None:
                        families[field].add_metric([backend, str(pool.get("pool_name"))],
                                                   value)
        return list(families.values())

    def describe(self):
        return [prom_core.GaugeMetricFamily(name, doc, labels=["backend", "pool"])
                for _field, name, doc in _POOL_FIELDS]


class QuotaCollector:
    """Outstanding and orphaned quota reservations, queried at scrape time.

    Orphans are what :meth:`blockmgr.quota.QuotaEngine.orphans` says (owner flow finished
    or gone, or ownerless and expired), with liveness from ``liveness()`` (a fresh
    ``is_owner_live`` callable per scrape). A failing query yields
    ``blockmgr_quota_scrape_error 1`` instead of failing the whole scrape.
    """

    def __init__(self, db, quota, liveness: Callable[[], Callable[[str], bool]]):
        self._db = db
        self._quota = quota
        self._liveness = liveness

    def collect(self):
        from blockmgr import quota_reconciler

        error = prom_core.GaugeMetricFamily(
            "blockmgr_quota_scrape_error",
            "1 when the reservation metrics could not be read from the database.")
        try:
            totals = quota_reconciler.reservation_totals(self._db)
            orphans = self._quota.orphans(self._liveness())
        except Exception:
            LOG.warning("Could not read quota reservations for metrics", exc_info=True)
            error.add_metric([], 1)
            return [error]
        error.add_metric([], 0)
        outstanding = prom_core.GaugeMetricFamily(
            "blockmgr_quota_reservations_outstanding",
            "Live (unresolved) quota reservations, by resource.", labels=["resource"])
        reserved = prom_core.GaugeMetricFamily(
            "blockmgr_quota_reserved_outstanding",
            "Sum of the positive deltas of live reservations (GiB for gigabytes), by "
            "resource.", labels=["resource"])
        orphaned = prom_core.GaugeMetricFamily(
            "blockmgr_quota_reservations_orphaned",
            "Live reservations whose owner flow is finished or gone (or ownerless and "
            "expired): the next sweep or reconcile releases them.", labels=["resource"])
        from blockmgr.quota import QuotaEngine

        counts = {r: 0 for r in QuotaEngine.RESOURCES}
        for orphan in orphans:
            counts[orphan.resource] = counts.get(orphan.resource, 0) + 1
        for resource in sorted(set(QuotaEngine.RESOURCES) | set(totals)):
            count, positive = totals.get(resource, (0, 0))
            outstanding.add_metric([resource], count)
            reserved.add_metric([resource], positive)
            orphaned.add_metric([resource], counts.get(resource, 0))
        return [error, outstanding, reserved, orphaned]


# --- serving ----------------------------------------------------------------------------------

class MetricsServer:
    """A threaded WSGI server on (host, port): ``GET /metrics`` (any path but the extra
    ones, as prometheus_client's own server) with the metrics of ``registry``, and each
    path of ``apps`` (``{"/healthcheck": wsgi_app}``) with its WSGI application.

    :raises ConfigurationError: the address cannot be bound (port in use, bad address).
    """

    def __init__(self, registry, host: str, port: int, *, option: str = "port",
                 collectors: Iterable = (), apps: dict | None = None):
        from wsgiref.simple_server import WSGIRequestHandler
        from wsgiref.simple_server import make_server

        from prometheus_client import exposition

        self._registry = registry
        self._collectors = list(collectors)
        metrics_app = prometheus_client.make_wsgi_app(registry)
        extra = dict(apps or {})

        def dispatch(environ, start_response):
            app = extra.get(environ.get("PATH_INFO", "").rstrip("/") or "/", metrics_app)
            return app(environ, start_response)

        class Server(exposition.ThreadingWSGIServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Handler(WSGIRequestHandler):
            def log_message(self, format, *args):   # scrapes and probes: no log line each
                pass

        try:
            self._httpd = make_server(host, port, dispatch, Server, handler_class=Handler)
        except OSError as exc:
            raise exception.ConfigurationError(
                section="metrics", option=option,
                reason="cannot serve metrics on %s:%d: %s; choose a free port or set "
                       "[metrics] enabled = false" % (host, port, exc)) from exc
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="metrics-http")
        self._thread.start()
        for collector in self._collectors:
            registry.register(collector)
        self.host = host
        self.port = self._httpd.server_port
        self.paths = sorted(extra)

    def url_of(self, path: str) -> str:
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "http://%s:%d%s" % (host, self.port, path)

    @property
    def url(self) -> str:
        return self.url_of("/metrics")

    def stop(self) -> None:
        """Stop serving and unregister the collectors this server registered."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
        for collector in self._collectors:
            self._registry.unregister(collector)
        self._collectors = []


def serve(conf, port_option: str, collectors: Iterable = (),
          metrics: Metrics | None = None, health=None) -> MetricsServer | None:
    """Start the endpoint ``[metrics]`` asks for (None when disabled), with ``collectors``
    registered until it stops. ``port_option``: ``volume_port`` or ``scheduler_port``.
    ``health``: a :class:`blockmgr.health.HealthChecks` served on ``GET /healthcheck``."""
    if not conf.metrics.enabled:
        return None
    from blockmgr import health as bm_health

    metrics = metrics or get()
    apps = {bm_health.PATH: bm_health.wsgi_app(health)} if health is not None else {}
    server = MetricsServer(metrics.registry, conf.metrics.bind_host,
                           getattr(conf.metrics, port_option), option=port_option,
                           collectors=collectors, apps=apps)
    LOG.info("Serving metrics on %s%s", server.url,
             " and health on %s" % server.url_of(bm_health.PATH) if apps else "")
    return server


def asgi_app(registry=None):
    """An ASGI app answering with the metrics of ``registry`` (default: this process's),
    whatever the path. For the REST API use :func:`api_routes`: mounted under ``/metrics``
    (``app.mount``) it only answers ``/metrics/``, and Starlette redirects ``/metrics`` there
    with a 307 that some scrapers do not follow."""
    return prometheus_client.make_asgi_app(registry or get().registry)


class _AsgiEndpoint:
    """A plain ASGI application as a route endpoint (Starlette wraps a bare function as a
    request handler instead)."""

    def __init__(self, app):
        self._app = app

    async def __call__(self, scope, receive, send):
        await self._app(scope, receive, send)


def api_routes(registry=None, path: str = "/metrics") -> list:
    """Starlette routes answering ``GET``/``HEAD`` on ``path`` and ``path/`` with the metrics
    of ``registry`` (default: this process's), neither of them redirected. For FastAPI /
    Starlette: ``app.router.routes.extend(metrics.api_routes())``; they stay out of the
    OpenAPI schema."""
    from starlette.routing import Route

    endpoint = _AsgiEndpoint(asgi_app(registry))
    return [Route(route_path, endpoint=endpoint, methods=["GET", "HEAD"],
                  include_in_schema=False, name="metrics" if route_path == path else None)
            for route_path in (path, path.rstrip("/") + "/")]
