"""Health checks: is this process able to do its work right now?

Three checks, each answering ``(ok, detail)``:

* :class:`DatabaseCheck` -- ``SELECT 1`` on the process's database engine;
* :class:`BrokerCheck` -- an AMQP login to the message broker of ``[DEFAULT] transport_url``
  (any one of its hosts; a plain TCP connection for other drivers; always healthy for the
  in-process transport of ``blockmgr serve``);
* :class:`BackendsCheck` -- every backend of a volume worker is serving (its driver set up,
  its unfinished work recovered, its RPC server consuming); a backend still starting or whose
  driver setup keeps failing makes the check fail, with the reason the service list shows.

:class:`HealthChecks` runs them concurrently, each bounded by ``timeout`` seconds (an
unreachable host that drops packets cannot hang a probe; a check still running from an
earlier probe is waited for, not started twice) and keeps each answer for ``max_age``
seconds (a successful broker login for :attr:`BrokerCheck.ok_max_age`), so a load balancer
probing every second costs one database round trip per ``max_age`` and one broker login
per 10 s.

Where they are served:

* the REST API (``blockmgr-api``, ``blockmgr serve``): ``GET /healthcheck`` is
  oslo.middleware's :class:`~oslo_middleware.healthcheck.Healthcheck` with these checks as its
  backends (:func:`api_routes`): 200 ``OK`` or 503 with one line per failing check
  (``Accept: application/json`` for a JSON body), ``HEAD`` 204 / 503; no authentication;
* the daemons (``blockmgr-volume``, ``blockmgr-scheduler``): ``GET /healthcheck`` on the
  ``[metrics]`` port next to ``/metrics`` (:func:`wsgi_app`, served by
  :class:`blockmgr.metrics.MetricsServer`), a short JSON body naming each check.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Iterable

LOG = logging.getLogger(__name__)

#: The path of the health endpoint, on the REST API and on the daemons' metrics port.
PATH = "/healthcheck"
#: Seconds a check may take before it counts as failed.
DEFAULT_TIMEOUT = 5.0
#: Seconds an answer is reused by the next probes.
DEFAULT_MAX_AGE = 2.0

_DETAIL_LIMIT = 300


def _describe(exc: BaseException) -> str:
    text = (getattr(exc, "msg", None) or str(exc)).strip().splitlines()
    first = text[0] if text else ""
    return ("%s: %s" % (type(exc).__name__, first))[:_DETAIL_LIMIT]


# --- the checks -------------------------------------------------------------------------------

class DatabaseCheck:
    """``SELECT 1`` on ``db`` (a :class:`blockmgr.db.session.Database`)."""

    name = "database"

    def __init__(self, db):
        self._db = db

    def check(self) -> tuple[bool, str]:
        import sqlalchemy

        with self._db.engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
        return True, "SELECT 1 answered"


class BrokerCheck:
    """Log in to the broker of the RPC transport URL (``[DEFAULT] transport_url``).

    RabbitMQ (``rabbit://``): an AMQP connection to each host in turn, with the TLS setting
    of ``[oslo_messaging_rabbit] ssl``; the first that accepts the login makes the check
    pass. Other drivers: a TCP connection to a host. ``inprocess://`` / ``fake://``: no
    broker to reach.
    """

    name = "broker"
    IN_PROCESS = ("inprocess://", "fake://")
    #: A login that succeeded is reused this long (each one is a connection the broker
    #: logs); a failed one is retried at the next probe after the usual ``max_age``.
    ok_max_age = 10.0

    def __init__(self, conf, url: str | None = None, timeout: float = DEFAULT_TIMEOUT):
        self._conf = conf
        self._url = url
        self._timeout = timeout

    def check(self) -> tuple[bool, str]:
        import oslo_messaging

        url = self._url if self._url is not None else self._conf.transport_url
        if url and url.startswith(self.IN_PROCESS):
            return True, "in-process transport"
        parsed = oslo_messaging.TransportURL.parse(self._conf, url)
        hosts = [host for host in parsed.hosts if host.hostname]
        if not hosts:
            return False, "no broker host in the transport URL"
        failures = []
        for host in hosts:
            where = "%s:%s" % (host.hostname, host.port or "default port")
            try:
                if parsed.transport == "rabbit":
                    self._amqp_login(parsed, host)
                elif host.port:
                    socket.create_connection((host.hostname, host.port),
                                             timeout=self._timeout).close()
                else:
                    return True, "%s: no port to try (%s driver)" % (host.hostname,
                                                                     parsed.transport)
                return True, "%s reachable" % where
            except Exception as exc:
                failures.append("%s: %s" % (where, _describe(exc)))
        return False, "unreachable (%s)" % "; ".join(failures)[:_DETAIL_LIMIT]

    def _amqp_login(self, parsed, host) -> None:
        import kombu

        connection = kombu.Connection(
            hostname=host.hostname, port=host.port or 5672, userid=host.username or "guest",
            password=host.password or "guest", virtual_host=parsed.virtual_host or "/",
            ssl=self._ssl(), connect_timeout=self._timeout, transport="pyamqp")
        try:
            connection.connect()
        finally:
            connection.release()

    def _ssl(self):
        try:
            options = self._conf.oslo_messaging_rabbit   # registered with the transport
        except Exception:   # NoSuchOptError: no rabbit transport in this process yet
            return False
        if not options.ssl:
            return False
        import ssl

        context = {"cert_reqs": ssl.CERT_REQUIRED}
        if options.ssl_ca_file:
            context["ca_certs"] = options.ssl_ca_file
        if options.ssl_cert_file:
            context["certfile"] = options.ssl_cert_file
        if options.ssl_key_file:
            context["keyfile"] = options.ssl_key_file
        return context


class BackendsCheck:
    """Every backend of a volume worker serving (``backends()`` returns its
    :class:`blockmgr.volume.service.BackendService` objects)."""

    name = "backends"

    def __init__(self, backends):
        self._backends = backends

    def check(self) -> tuple[bool, str]:
        down, up = [], []
        for backend in self._backends():
            if backend.ready.is_set():
                up.append(backend.host)
            else:
                down.append("%s: %s" % (backend.host, backend.setup_error
                                        or "starting (driver setup or recovery)"))
        if not up and not down:
            return False, "no backend configured"
        if down:
            return False, "down: %s" % "; ".join(down)[:_DETAIL_LIMIT]
        return True, "serving: %s" % ", ".join(up)


# --- running them -----------------------------------------------------------------------------

class CheckResult:
    __slots__ = ("name", "ok", "detail")

    def __init__(self, name: str, ok: bool, detail: str):
        self.name, self.ok, self.detail = name, ok, detail

    def __repr__(self):
        return "CheckResult(%r, %r, %r)" % (self.name, self.ok, self.detail)


class _Timed:
    """One check run in a daemon thread of its own; at most one run at a time."""

    def __init__(self, check):
        self.check = check
        self._lock = threading.Lock()
        self._result: CheckResult | None = None
        self._result_at = 0.0
        self._running: threading.Event | None = None
        self._started = 0.0

    def begin(self, max_age: float) -> None:
        with self._lock:
            result = self._result
            if max_age and result is not None and result.ok:
                max_age = max(max_age, getattr(self.check, "ok_max_age", 0.0))
            fresh = (result is not None
                     and time.monotonic() - self._result_at < max_age)
            if fresh or self._running is not None:
                return
            self._running = threading.Event()
            self._started = time.monotonic()
            threading.Thread(target=self._run, args=(self._running,), daemon=True,
                             name="health-%s" % self.check.name).start()

    def _run(self, done: threading.Event) -> None:
        try:
            ok, detail = self.check.check()
        except Exception as exc:
            ok, detail = False, _describe(exc)
        with self._lock:
            self._result = CheckResult(self.check.name, bool(ok), detail)
            self._result_at = time.monotonic()
            self._running = None
        done.set()

    def wait(self, timeout: float) -> CheckResult:
        with self._lock:
            running, started = self._running, self._started
            result = self._result
        if running is None:
            return result
        if running.wait(max(0.0, timeout - (time.monotonic() - started))):
            with self._lock:
                return self._result
        return CheckResult(self.check.name, False, "no answer within %g s" % timeout)


class HealthChecks:
    """The checks of one process; :meth:`run` answers all of them."""

    def __init__(self, checks: Iterable = (), *, timeout: float = DEFAULT_TIMEOUT,
                 max_age: float = DEFAULT_MAX_AGE):
        self.timeout = timeout
        self.max_age = max_age
        self._timed = [_Timed(check) for check in checks]

    def add(self, check) -> None:
        self._timed.append(_Timed(check))

    @property
    def names(self) -> list[str]:
        return [timed.check.name for timed in self._timed]

    def begin(self) -> None:
        for timed in self._timed:
            timed.begin(self.max_age)

    def result(self, name: str) -> CheckResult:
        """The answer of check ``name`` (started by :meth:`begin`)."""
        for timed in self._timed:
            if timed.check.name == name:
                return timed.wait(self.timeout)
        raise KeyError(name)

    def run(self) -> list[CheckResult]:
        self.begin()
        results = [timed.wait(self.timeout) for timed in self._timed]
        for result in results:
            if not result.ok:
                LOG.warning("Health check %s failed: %s", result.name, result.detail)
        return results


def process_checks(conf, db, *, backends=None, **options) -> HealthChecks:
    """The checks of a process using ``db`` and the broker of ``conf``; with ``backends``
    (a callable returning the volume worker's backend services) the backends too."""
    checks = [DatabaseCheck(db), BrokerCheck(conf)]
    if backends is not None:
        checks.append(BackendsCheck(backends))
    return HealthChecks(checks, **options)


def report(checks: HealthChecks) -> tuple[bool, dict]:
    """``(healthy, body)`` for the daemons' endpoint: ``{"status": "ok" | "failed",
    "failed": [names], "checks": {name: {"ok": bool, "detail": str}}}``."""
    results = checks.run()
    failed = [r.name for r in results if not r.ok]
    return not failed, {"status": "failed" if failed else "ok", "failed": failed,
                        "checks": {r.name: {"ok": r.ok, "detail": r.detail}
                                   for r in results}}


# --- the daemons' endpoint (WSGI, on the metrics port) ----------------------------------------

def wsgi_app(checks: HealthChecks):
    """A WSGI application answering ``GET``/``HEAD`` with :func:`report`: 200 when every
    check passes, 503 otherwise."""

    def app(environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"),
                                                      ("Content-Length", "0")])
            return [b""]
        healthy, body = report(checks)
        payload = json.dumps(body, sort_keys=True).encode() + b"\n"
        start_response("200 OK" if healthy else "503 Service Unavailable",
                       [("Content-Type", "application/json"),
                        ("Cache-Control", "no-store"),
                        ("Content-Length", str(len(payload)))])
        return [b"" if method == "HEAD" else payload]

    return app


# --- the REST API's endpoint: oslo.middleware's healthcheck -----------------------------------

def oslo_healthcheck(checks: HealthChecks):
    """oslo.middleware's :class:`~oslo_middleware.healthcheck.Healthcheck` (a WSGI app) whose
    backends are ``checks``, one reason line per check. Its options (``detailed``,
    ``allowed_source_ranges``, ...) keep their defaults, on a private configuration: the
    service's own has no ``[healthcheck]`` section."""
    from oslo_config import cfg
    from oslo_middleware import healthcheck
    from oslo_middleware.healthcheck import pluginbase
    from stevedore import extension

    class _Check(pluginbase.HealthcheckBaseExtension):
        def __init__(self, name):
            self.name = name

        def healthcheck(self, server_port):
            checks.begin()   # all of them at once; each answer is then waited for
            result = checks.result(self.name)
            return pluginbase.HealthcheckResult(
                available=result.ok,
                reason="%s: %s" % (result.name, "OK" if result.ok else result.detail),
                details=result.detail)

    class _Healthcheck(healthcheck.Healthcheck):
        def __init__(self):
            super().__init__(None, cfg.ConfigOpts())

        @property
        def _backends(self):
            return [extension.Extension(name, None, _Check, _Check(name))
                    for name in checks.names]

        @_backends.setter
        def _backends(self, _manager):
            pass   # the stevedore manager of configured plugins: none are configured

    return _Healthcheck()


class _AsgiHealthcheck:
    """Runs the oslo WSGI healthcheck in a worker thread for one ASGI request."""

    def __init__(self, checks: HealthChecks):
        self.checks = checks
        self._wsgi = oslo_healthcheck(checks)

    async def __call__(self, scope, receive, send):
        import webob
        from starlette.concurrency import run_in_threadpool

        headers = {key.decode("latin-1"): value.decode("latin-1")
                   for key, value in scope.get("headers") or ()}
        server = scope.get("server") or ("localhost", 80)
        client = scope.get("client") or ("", 0)
        request = webob.Request.blank(
            scope.get("path") or PATH, method=scope.get("method", "GET"),
            headers={k: v for k, v in headers.items() if k.lower() != "content-length"},
            environ={"REMOTE_ADDR": client[0] or "", "SERVER_NAME": str(server[0]),
                     "SERVER_PORT": str(server[1] or 80)})
        response = await run_in_threadpool(request.get_response, self._wsgi)
        await send({"type": "http.response.start", "status": response.status_code,
                    "headers": [(k.lower().encode("latin-1"), v.encode("latin-1"))
                                for k, v in response.headerlist]
                    + [(b"cache-control", b"no-store")]})
        await send({"type": "http.response.body",
                    "body": b"" if scope.get("method") == "HEAD" else response.body})


def api_routes(checks: HealthChecks, path: str = PATH) -> list:
    """Starlette routes answering ``GET``/``HEAD`` on ``path`` with oslo.middleware's
    healthcheck over ``checks``; kept out of the OpenAPI schema. For FastAPI / Starlette:
    ``app.router.routes.extend(health.api_routes(checks))``."""
    from starlette.routing import Route

    return [Route(path, endpoint=_AsgiHealthcheck(checks), methods=["GET", "HEAD"],
                  include_in_schema=False, name="healthcheck")]


def install(app, conf, db) -> HealthChecks:
    """Serve ``GET /healthcheck`` on a FastAPI ``app`` with the database and broker checks;
    the checks are ``app.state.health`` (a caller running more adds to them: ``serve`` adds
    its backends)."""
    checks = app.state.health = process_checks(conf, db)
    app.router.routes.extend(api_routes(checks))
    return checks
