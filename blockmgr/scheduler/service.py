"""The scheduler service: its RPC server, heartbeat, reservation sweeper and quota reconciler,
started together.

``blockmgr-scheduler`` (:mod:`blockmgr.cmd.scheduler`) builds one from the global config; the
all-in-one mode and tests build one from any config, database and transport. The RPC server
listens on topic ``blockmgr-scheduler`` (shared queue: several schedulers share the load) and
its fanout queue (every scheduler gets every capacity report).

At start the scheduler asks every volume backend for its capacity report (a fanout cast),
so it can place within a moment of starting, not one ``backend_stats_polling_interval``
later.

Requests not placed yet are the scheduler's in the ledger (:mod:`blockmgr.ledger`): at start
and every ``[requests] sweep_interval`` the scheduler rings every such
request that is pending or whose claim expired, so a request whose message was lost (a
scheduler stopped or killed after taking it, a broker that dropped it) is placed anyway.

The quota reconciler (:mod:`blockmgr.quota_reconciler`) runs every ``[quota]
reconcile_interval`` seconds (0: never), first one interval after start. Metrics: the
process's :mod:`blockmgr.metrics`, plus :meth:`SchedulerService.metrics_collectors` (quota
reservations), served by ``blockmgr-scheduler`` when ``[metrics] enabled``.
"""

from __future__ import annotations

import logging

from blockmgr import context as bm_context
from blockmgr import ledger as bm_ledger
from blockmgr import metrics as bm_metrics
from blockmgr import periodic
from blockmgr import quota_reconciler
from blockmgr import rpc
from blockmgr import services
from blockmgr.db import requests as db_requests
from blockmgr.scheduler import manager as sched_manager
from blockmgr.scheduler import reservations
from blockmgr.scheduler import stale

LOG = logging.getLogger(__name__)


class SchedulerService:
    """:param persistence: flow persistence for the sweeper's and the reconciler's liveness
    checks; by default opened from ``[flows]`` (None when flows are kept in memory).
    :param metrics: where the reconciler records its runs (default: this process's)."""

    def __init__(self, conf, *, db, transport, quota, notifier, volume_rpcapi=None,
                 persistence=None, metrics=None):
        from blockmgr.volume import rpcapi as volume_rpcapi_mod

        self.conf = conf
        self.db = db
        self.transport = transport
        self.manager = sched_manager.SchedulerManager(
            conf, db=db, quota=quota, notifier=notifier,
            volume_rpcapi=volume_rpcapi or volume_rpcapi_mod.VolumeAPI(transport))
        if persistence is None and (conf.flows.persistence_connection or "") != "memory":
            from blockmgr.flows import engine as flow_engine
            persistence = flow_engine.open_persistence(conf, db)
        self.quota = quota
        self.persistence = persistence
        self.sweep = reservations.PeriodicSweep(
            reservations.ReservationSweeper(quota, persistence),
            conf.quota.reservation_clean_interval)
        self.metrics = metrics or bm_metrics.get()
        self.reconciler = quota_reconciler.QuotaReconciler(quota, db, persistence,
                                                           metrics=self.metrics)
        self._reconcile_timer: periodic.PeriodicTimer | None = None
        self.stale_creates = stale.StaleCreates(conf, db=db, notifier=notifier)
        self._stale_timer: periodic.PeriodicTimer | None = None
        self.ledger = bm_ledger.Ledger(db, conf, owner_prefix="scheduler:%s" % conf.host,
                                       targets=[db_requests.SCHEDULER],
                                       hooks=SchedulerRequestHooks(db, quota))
        self.manager.ledger = self.ledger
        self.server = rpc.get_server(transport, rpc.SCHEDULER_TOPIC, conf.host, [self.manager])
        self._heartbeat = periodic.PeriodicTimer(
            "scheduler-heartbeat", conf.report_interval, self._beat,
            initial_delay=conf.report_interval)
        self._service_id: int | None = None

    def start(self) -> None:
        with self.db.writer() as session:
            self._service_id = services.register(
                session, self.conf.host, services.SCHEDULER_BINARY, rpc.SCHEDULER_TOPIC,
                version=sched_manager.SchedulerManager.RPC_API_VERSION)
            services.heartbeat(session, self._service_id)
        self.server.start()
        self.manager.serving()
        try:   # the reports arrive on the fanout queue this server consumes from now on
            self.manager.volume_rpcapi.publish_capabilities(bm_context.get_admin_context())
        except Exception:
            LOG.warning("Could not ask the volume backends for their capabilities; placing "
                        "waits for their next periodic report", exc_info=True)
        self.ledger.start(self._ring)
        self.sweep.start()
        interval = self.conf.quota.reconcile_interval
        if interval > 0:
            self._reconcile_timer = periodic.PeriodicTimer(
                "quota-reconciler", interval, self.reconciler.run,
                initial_delay=interval).start()
        if self.stale_creates.timeout:
            every = stale.sweep_interval(self.stale_creates.timeout)
            self._stale_timer = periodic.PeriodicTimer(
                "stale-creates", every, self.stale_creates.sweep, initial_delay=every).start()
        self._heartbeat.start()
        LOG.info("Scheduler %s serving topic %s", self.conf.host, rpc.SCHEDULER_TOPIC)

    def stop(self) -> None:
        self._heartbeat.stop(timeout=5)
        self.sweep.stop()
        if self._reconcile_timer is not None:
            self._reconcile_timer.stop(timeout=5)
        if self._stale_timer is not None:
            self._stale_timer.stop(timeout=5)
        self.ledger.stop()
        self.server.stop()
        self.server.wait()
        self.ledger.release()

    def _ring(self, row) -> None:
        rpc.get_client(self.transport, rpc.SCHEDULER_TOPIC,
                       version=sched_manager.SchedulerManager.RPC_API_VERSION, retry=1).cast(
            bm_context.RequestContext.from_dict(row.context), row.action,
            request_id=row.id, **row.arguments)

    def metrics_collectors(self) -> list:
        """Collectors only a scheduler serves: quota reservations (outstanding, orphaned)."""
        return [bm_metrics.QuotaCollector(
            self.db, self.quota, lambda: reservations.liveness(self.persistence))]

    def _beat(self) -> None:
        """One heartbeat (every ``report_interval`` s; a failure is logged by the timer)."""
        with self.db.writer() as session:
            services.heartbeat(session, self._service_id)
        # also watch the workers' heartbeats while idle (liveness.py: suspects)
        self.manager.live.get(fresh=True)


class SchedulerRequestHooks(bm_ledger.RequestHooks):
    """The scheduler's requests: its endpoints settle every outcome they know (placed and
    handed off, or the resource in error), so a request that raised did not settle; out of
    attempts, its resource goes to its error status."""

    def __init__(self, db, quota):
        self.db, self.quota = db, quota

    def settle_failed(self, row, reason: str) -> None:
        from blockmgr.volume import recovery

        recovery.settle_failed(self.db, self.quota, row.kind, row.resource_id, row.id,
                               reason)
