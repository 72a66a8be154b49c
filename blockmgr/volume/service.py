"""The volume worker service: one :class:`BackendService` per enabled backend.

Start-up of a backend, in this order (Cinder's order, except that the backend reports
itself down until it serves and retries a failing driver set-up with a backoff):

1. Register the ``services`` row (``host@backend``, binary ``blockmgr-volume``), with
   ``disabled_reason`` saying what it is waiting for. No heartbeat yet: it is down.
2. Build the driver and run ``do_setup`` + ``check_for_setup_error``; on failure record the
   reason, wait (``driver_setup_retry_interval``, doubling up to
   ``driver_setup_retry_max_interval``) and retry (``driver_setup_retries``, -1: forever).
   The backend stays down meanwhile; the process and its other backends are unaffected.
3. ``VolumeManager.init_host()``: count allocated capacity, recover unfinished flows and
   orphaned transitional resources, release orphaned reservations -- *before* consuming.
4. Start the backend's request ledger (:mod:`blockmgr.ledger`): claims of this worker's
   earlier process are given back, and every request of the backend that may be claimed
   (pending, or its claim expired) is rung through the backend's own queue; then sweeps
   every ``[requests] sweep_interval``.
5. Start the RPC server (topic ``blockmgr-volume``, server ``host@backend``; at most
   ``rpc_worker_threads`` requests at once, the rest wait in the broker).
6. Heartbeat at once and every ``report_interval``; publish capabilities at once and every
   ``backend_stats_polling_interval`` (fanout ``update_service_capabilities`` to the
   schedulers).

Stopping (:meth:`BackendService.stop`): stop the timers and the ledger (no new claims: a
message taken now leaves its request pending), stop consuming, wait up to the grace period
for running requests, then give back the claims of requests not running. Requests still
running then are abandoned to their persisted flows; the next start resumes them (step 3)
and the ledger settles their requests.

Cluster mode (a backend section with ``cluster = NAME``, ``docs/cluster.md``): the backend is
served as ``NAME@backend`` -- driver, RPC server, services row, capacity reports and volume
hosts all use that name, shared by every member -- and, before step 3, the worker joins the
cluster (:class:`blockmgr.cluster.member.ClusterMember`: jobboard, claim renewal, tooz locks).
Step 3 then recovers only flows it can claim, and after it the member's takeover conductor
starts. Stopping also stops the conductor and the claim renewals.
"""

from __future__ import annotations

import logging
import threading
import time

from blockmgr import cluster as bm_cluster
from blockmgr import context as bm_context
from blockmgr import exception
from blockmgr import periodic
from blockmgr import rpc
from blockmgr import services
from blockmgr.db import models
from blockmgr.volume import capabilities as bm_capabilities

LOG = logging.getLogger(__name__)

SCHEDULER_RPC_VERSION = "1.0"
#: The volume RPC API version this worker serves (``services.rpc_current_version``).
SERVICE_RPC_VERSION = "1.1"


class SchedulerClient:
    """What a volume worker sends to the schedulers: reschedules and capacity reports."""

    def __init__(self, transport, db=None):
        self.transport = transport
        self.db = db

    def reschedule(self, context, volume_id, request_spec, filter_properties) -> None:
        """Send a failed create back to the schedulers (the manager's ``reschedule`` hook):
        inside a ledger request, as a new request recorded first (:func:`blockmgr.ledger.
        follow_up`), which the cast only rings."""
        from blockmgr import ledger

        arguments = {"volume_id": volume_id, "request_spec": request_spec,
                     "filter_properties": filter_properties}
        request_id = None
        if self.db is not None:
            request_id = ledger.follow_up(self.db, context, target="scheduler",
                                          action="create_volume", arguments=arguments)
        extra = {"request_id": request_id} if request_id else {}
        try:
            rpc.get_client(self.transport, rpc.SCHEDULER_TOPIC,
                           version=SCHEDULER_RPC_VERSION).cast(
                context, "create_volume", **arguments, **extra)
        except Exception:
            if request_id is None:
                raise
            LOG.warning("Could not ring the schedulers for request %s; their next sweep "
                        "places it", request_id, exc_info=True)

    def update_service_capabilities(self, context, host: str, capabilities: dict,
                                    timestamp: str) -> None:
        rpc.get_client(self.transport, rpc.SCHEDULER_TOPIC, version=SCHEDULER_RPC_VERSION,
                       fanout=True).cast(
            context, "update_service_capabilities", service_name="volume", host=host,
            capabilities=capabilities, timestamp=timestamp)


class _SetupFailed(Exception):
    """A driver setup attempt failed (retried by :meth:`BackendService._set_up_driver`)."""


class _SetupStopped(Exception):
    """The backend stopped while its driver setup was being retried."""


class _SetupRefused(Exception):
    """The driver class breaks its contract (``DriverContractError``): no retry can fix
    that, the backend stays down with the reason until the driver is fixed."""


class BackendService:
    """One backend of this node; see the module docstring.

    :param driver: a driver instance to use instead of building the one the backend
        section names (tests).
    :param manager_factory: ``manager_factory(driver) -> VolumeManager`` instead of the
        default construction (tests).
    """

    def __init__(self, conf, backend_name: str, *, db, transport, notifier=None,
                 driver=None, manager_factory=None):
        self.conf = conf
        self.backend_name = backend_name
        #: This worker's own ``host@backend``; :attr:`host` is the name it serves, which in
        #: cluster mode is the cluster's ``cluster@backend``.
        self.member_host = "%s@%s" % (conf.host, backend_name)
        self.cluster_host = bm_cluster.cluster_host(conf, backend_name)
        self.host = self.cluster_host or self.member_host
        self.cluster = None   # the ClusterMember, once joined
        self.db = db
        self.transport = transport
        # Published as volume.<host>@<backend>, as Cinder's volume services publish.
        self.notifier = notifier.for_host(self.member_host) if notifier is not None else None
        self.driver = driver
        self._driver_given = driver is not None
        self.manager = None
        self.server = None
        self.ledger = None   # blockmgr.ledger.Ledger, once recovered
        self.service_id: int | None = None
        self.scheduler = SchedulerClient(transport, db)
        self.last_capabilities: dict | None = None
        self.setup_attempts = 0
        self.setup_error: str | None = None
        self.ready = threading.Event()
        self.ready_after: float | None = None   # seconds from start() to ready
        self._manager_factory = manager_factory
        self._stopping = threading.Event()
        self._timers: list[periodic.PeriodicTimer] = []
        self._thread: threading.Thread | None = None

    # --- start --------------------------------------------------------------------------

    def start(self) -> None:
        """Bring the backend up in a thread of its own (driver setup may wait and retry)."""
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self._bring_up, name="start-%s" % self.host,
                                        daemon=True)
        self._thread.start()

    def _bring_up(self) -> None:
        try:
            self._register("starting: driver setup")
            if not self._set_up_driver():
                return
            self._set_reason("starting: recovering unfinished work")
            self.manager = self._build_manager()
            report = self.manager.init_host()
            LOG.info("%s recovered: %d flow(s) resumed, %d reverted, %d failed, %d orphan(s)",
                     self.host, len(report.resumed), len(report.reverted),
                     len(report.failed), len(report.orphans))
            if self._stopping.is_set():
                return
            from blockmgr.volume import endpoint

            self.ledger = self._build_ledger()
            volume_endpoint = endpoint.VolumeEndpoint(self.manager, self.capabilities,
                                                      publish=self.publish_capabilities)
            volume_endpoint.ledger = self.ledger
            self.server = rpc.get_server(
                self.transport, rpc.VOLUME_TOPIC, self.host, [volume_endpoint],
                pool_size=self.conf.rpc_worker_threads)
            rung = self.ledger.start(self._ring, idle=self._idle)
            if rung:
                LOG.info("%s: %d request(s) of this backend waiting in the ledger were "
                         "rung", self.host, rung)
            self.server.start()
            self._set_reason(None)
            self.heartbeat()
            self.ready_after = time.monotonic() - self._started_at
            self.ready.set()
            if self.cluster is not None:
                self.cluster.start_conductor(self.manager)
            LOG.info("%s is serving%s (ready after %.3f s)", self.host,
                     " as member %s" % self.member_host if self.cluster else "",
                     self.ready_after)
            self._timers = [
                periodic.PeriodicTimer("heartbeat-%s" % self.host, self.conf.report_interval,
                                       self.heartbeat,
                                       initial_delay=self.conf.report_interval).start(),
                periodic.PeriodicTimer("capabilities-%s" % self.host,
                                       self.conf.backend_stats_polling_interval,
                                       self.publish_capabilities).start(),
            ]
        except Exception as exc:
            # A bug or an unreachable database: keep the process (and other backends) up,
            # keep this backend visibly down, say why.
            LOG.exception("Backend %s failed to start", self.host)
            self.setup_error = "start failed: %s" % exc
            self._set_reason(self.setup_error, quiet=True)

    def _build_ledger(self):
        from blockmgr import ledger
        from blockmgr.volume import ledger_hooks

        backend_ledger = ledger.Ledger(self.db, self.conf, owner_prefix=self.member_host,
                                       targets=[self.host],
                                       hooks=ledger_hooks.BackendRequestHooks(self.manager))
        # A create's first claim rides on its flow's first write when that write is in
        # the service database and made here (a cluster's flows run on a member's
        # conductor, from the jobboard).
        runner = self.manager.runner
        backend_ledger.defer_first_claims = (
            getattr(runner, "board", None) is None
            and getattr(runner.backend, "closes_flows", False))
        return backend_ledger

    def _ring(self, row) -> None:
        """Cast ledger request ``row`` to this backend's queue (a cluster's: any member)."""
        rpc.get_client(self.transport, rpc.VOLUME_TOPIC, server=self.host,
                       version=SERVICE_RPC_VERSION, retry=1).cast(
            bm_context.RequestContext.from_dict(row.context), row.action,
            request_id=row.id, **row.arguments)

    def _idle(self) -> bool:
        server = self.server
        return server is None or server.busy < server.pool_size

    def _build_driver(self):
        """Load (and check: ``DriverContractError``) the section's driver class, build it."""
        from blockmgr.drivers import loader

        section = self.conf[self.backend_name]
        driver_cls, caps = loader.load_driver_class(section.volume_driver,
                                                    section=self.backend_name)
        LOG.info("Backend %s: driver %s, capabilities: %s", self.host, caps.driver,
                 ", ".join(caps.names()) or "core volume operations only")
        return driver_cls(section, self.backend_name, host=self.host)

    def _set_up_driver(self) -> bool:
        """Setup with retries; False if stopped or out of retries (the backend stays down).

        tenacity runs the attempts: ``driver_setup_retries`` retries (-1: forever), the
        first after ``driver_setup_retry_interval`` seconds and each next one twice as long
        (at least 0.1 s) up to ``driver_setup_retry_max_interval``. :meth:`stop` ends the
        wait at once and no further attempt starts.
        """
        import tenacity

        conf = self.conf
        interval = conf.driver_setup_retry_interval
        retries = conf.driver_setup_retries
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_SetupFailed),
            stop=(tenacity.stop_never if retries < 0
                  else tenacity.stop_after_attempt(retries + 1)),
            wait=tenacity.wait_chain(
                tenacity.wait_fixed(interval),
                tenacity.wait_exponential(multiplier=max(interval, 0.05),
                                          max=conf.driver_setup_retry_max_interval)),
            sleep=self._stopping.wait)   # returns early on stop: the next attempt sees it
        try:
            retrying(self._set_up_driver_once)
        except _SetupStopped:
            return False
        except _SetupRefused:
            LOG.error("Backend %s stays down: %s; fix the driver and restart "
                      "blockmgr-volume", self.host, self.setup_error)
            return False
        except tenacity.RetryError:
            LOG.error("Backend %s stays down: driver setup failed %d time(s); fix the "
                      "cause and restart blockmgr-volume", self.host, self.setup_attempts)
            return False
        return True

    def _set_up_driver_once(self) -> None:
        """One setup attempt. :raises _SetupFailed: it failed (the reason is recorded).
        :raises _SetupStopped: the backend is stopping; no attempt was made."""
        if self._stopping.is_set():
            raise _SetupStopped()
        self.setup_attempts += 1
        try:
            if not self._driver_given:   # rebuilt each time: its constructor may fail
                self.driver = self._build_driver()
            self.driver.do_setup(bm_context.get_admin_context())
            self.driver.check_for_setup_error()
        except Exception as exc:
            self.setup_error = "driver setup failed (attempt %d): %s" % (
                self.setup_attempts, getattr(exc, "msg", None) or exc)
            LOG.error("Backend %s: %s", self.host, self.setup_error,
                      exc_info=not isinstance(exc, exception.BlockmgrError))
            self._set_reason(self.setup_error, quiet=True)
            if isinstance(exc, exception.DriverContractError):
                raise _SetupRefused() from exc
            raise _SetupFailed() from exc
        self.setup_error = None

    def _build_manager(self):
        if self._manager_factory is not None:
            return self._manager_factory(self.driver)
        from blockmgr.quota import QuotaEngine
        from blockmgr.volume.manager import VolumeManager

        extra = {}
        if self.cluster_host:
            from blockmgr.cluster import member

            self.cluster = member.open_member(self.conf, self.cluster_host, self.member_host,
                                              self.db)
            extra = {"runner": self.cluster.runner, "locks": self.cluster.locks,
                     "host": self.host}
        return VolumeManager(self.conf, self.backend_name, db=self.db, driver=self.driver,
                             quota=QuotaEngine(self.db, self.conf), notifier=self.notifier,
                             reschedule=self.scheduler.reschedule, **extra)

    # --- periodic work ------------------------------------------------------------------

    def heartbeat(self) -> None:
        """One heartbeat; re-registers if an operator deleted the row meanwhile."""
        try:
            with self.db.writer() as session:
                services.heartbeat(session, self.service_id)
        except exception.ServiceNotFound:
            self._register(None)
            with self.db.writer() as session:
                services.heartbeat(session, self.service_id)

    def publish_capabilities(self) -> dict:
        """Measure (driver stats, refreshed), add allocated capacity, fanout to schedulers."""
        started = time.monotonic()
        if self.cluster_host:
            # Peers place volumes too: count the cluster's allocation from the database.
            with self.db.reader() as session:
                self.manager.capacity.load(session, self.host)
        stats = self.driver.get_volume_stats(refresh=True)
        elapsed = time.monotonic() - started
        if elapsed > self.conf.backend_stats_polling_interval / 2:
            LOG.warning("get_volume_stats of %s took %.1f s, over half the polling interval",
                        self.host, elapsed)
        report = self.capabilities_from(stats)
        self.last_capabilities = report
        self.scheduler.update_service_capabilities(
            bm_context.get_admin_context(), self.host, report, models.utcnow().isoformat())
        return report

    def capabilities(self) -> dict:
        """The capacity report now: the driver's cached stats and the current allocation."""
        return self.capabilities_from(self.driver.get_volume_stats(refresh=False))

    def capabilities_from(self, stats) -> dict:
        """The published report: ``stats`` checked against the driver's stats contract
        (:func:`~blockmgr.volume.capabilities.validate_stats`, once per report).

        :raises InvalidDriverStats: the driver's report is wrong (named key); nothing is
            published, the schedulers keep the backend's previous report.
        """
        section = self.conf[self.backend_name]
        driver = type(self.driver)
        return bm_capabilities.build_report(
            stats, self.manager.capacity.snapshot(),
            backend_name=section.volume_backend_name or self.backend_name,
            driver="%s.%s" % (driver.__module__, driver.__qualname__))

    # --- stop ---------------------------------------------------------------------------

    def stop(self, grace: float) -> bool:
        """Stop consuming and wait up to ``grace`` seconds for running requests.

        :returns: True if nothing was left running (False: the rest resumes at next start).
        """
        self._stopping.set()
        if self.ledger is not None:
            self.ledger.stop()
        for timer in self._timers:
            timer.stop(timeout=1)
        if self._thread is not None:
            self._thread.join(timeout=1)
        try:
            return self._drain(grace)
        finally:
            if self.ledger is not None:
                self.ledger.release()
            if self.cluster is not None:
                self.cluster.stop()

    def _drain(self, grace: float) -> bool:
        server = self.server
        if server is None:
            return True
        drained = threading.Event()

        def drain():
            server.stop()
            server.wait()
            drained.set()

        threading.Thread(target=drain, name="drain-%s" % self.host, daemon=True).start()
        if drained.wait(grace):
            LOG.info("%s stopped cleanly", self.host)
            return True
        LOG.warning("%s: %d request(s) still running after the %.0f s grace period; their "
                    "flows are persisted and resume at the next start", self.host,
                    server.busy, grace)
        return False

    # --- service row --------------------------------------------------------------------

    def _register(self, reason: str | None) -> None:
        with self.db.writer() as session:
            self.service_id = services.register(
                session, self.host, services.VOLUME_BINARY, rpc.VOLUME_TOPIC,
                version=SERVICE_RPC_VERSION, reason=reason,
                availability_zone=self.conf[self.backend_name].storage_availability_zone)

    def _set_reason(self, reason: str | None, quiet: bool = False) -> None:
        if self.service_id is None:
            return
        try:
            with self.db.writer() as session:
                services.set_reason(session, self.service_id, reason)
        except Exception:
            if not quiet:
                raise
            LOG.warning("Could not record the state of %s", self.host, exc_info=True)


def pool_options(conf) -> dict:
    """Database pool settings that keep one connection open per thread that needs one.

    Every RPC worker thread of every backend runs its flow on its own connection, and the
    timers (heartbeat, capacity) need a few more. oslo.db's defaults keep only 5 connections
    (``max_pool_size``) and open the rest as *overflow* connections, which are closed when
    returned -- so under load each transaction past the fifth reconnected (TCP, TLS
    context, authentication, session setup). The pool is raised to the daemon's
    concurrency, taken out of ``max_overflow`` so the cap on open connections
    (``max_pool_size + max_overflow``) the operator configured stays what it was.
    """
    db = conf.database
    if db.connection.startswith("sqlite") or db.max_pool_size is None:
        return {}
    wanted = conf.rpc_worker_threads * max(1, len(conf.enabled_backends)) + 4
    if db.max_pool_size >= wanted:
        return {}
    cap = db.max_pool_size + max(0, db.max_overflow or 0)
    size = min(wanted, cap)
    return {"max_pool_size": size, "max_overflow": cap - size}


class VolumeDaemon:
    """All backends of this node, sharing one database, transport and notifier."""

    def __init__(self, conf, *, db=None, transport=None, notifier=None):
        from blockmgr.db.session import Database
        from blockmgr.notifications import Notifier

        self.conf = conf
        self.db = db or Database.from_config(conf, **pool_options(conf))
        self.transport = transport or rpc.get_transport(conf)
        if notifier is None:
            notifier = Notifier(conf, conf.host,
                                transport=rpc.get_notification_transport(conf))
        self.backends = [BackendService(conf, name, db=self.db, transport=self.transport,
                                        notifier=notifier)
                         for name in conf.enabled_backends]

    def start(self) -> None:
        if not self.backends:
            raise exception.ConfigurationError(
                section="DEFAULT", option="enabled_backends",
                reason="blockmgr-volume needs at least one backend to serve")
        for backend in self.backends:
            backend.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for backend in self.backends:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not backend.ready.wait(left):
                return False
        return True

    def stop(self, grace: float) -> bool:
        """Stop every backend (in parallel, sharing the grace period); True if all drained."""
        results = {}

        def stop_one(backend):
            results[backend.host] = backend.stop(grace)

        threads = [threading.Thread(target=stop_one, args=(b,), daemon=True)
                   for b in self.backends]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(grace + 5)
        return all(results.get(b.host, False) for b in self.backends)
