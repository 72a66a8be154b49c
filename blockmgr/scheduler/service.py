"""The scheduler service: its RPC server, heartbeat and reservation sweeper, started together.

``blockmgr-scheduler`` (:mod:`blockmgr.cmd.scheduler`) builds one from the global config; the
all-in-one mode and tests build one from any config, database and transport. The RPC server
listens on topic ``blockmgr-scheduler`` (shared queue: several schedulers share the load) and
its fanout queue (every scheduler gets every capacity report).
"""

from __future__ import annotations

import logging
import threading

from blockmgr import rpc
from blockmgr import services
from blockmgr.scheduler import manager as sched_manager
from blockmgr.scheduler import reservations

LOG = logging.getLogger(__name__)


class SchedulerService:
    """:param persistence: flow persistence for the sweeper's liveness checks; by default
    opened from ``[flows]`` (None when flows are kept in memory)."""

    def __init__(self, conf, *, db, transport, quota, notifier, volume_rpcapi=None,
                 persistence=None):
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
        self.sweep = reservations.PeriodicSweep(
            reservations.ReservationSweeper(quota, persistence),
            conf.quota.reservation_clean_interval)
        self.server = rpc.get_server(transport, rpc.SCHEDULER_TOPIC, conf.host, [self.manager])
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name="scheduler-heartbeat",
                                           daemon=True)
        self._service_id: int | None = None

    def start(self) -> None:
        with self.db.writer() as session:
            self._service_id = services.register(
                session, self.conf.host, services.SCHEDULER_BINARY, rpc.SCHEDULER_TOPIC,
                version=sched_manager.SchedulerManager.RPC_API_VERSION)
            services.heartbeat(session, self._service_id)
        self.server.start()
        self.sweep.start()
        self._heartbeat.start()
        LOG.info("Scheduler %s serving topic %s", self.conf.host, rpc.SCHEDULER_TOPIC)

    def stop(self) -> None:
        self._stop.set()
        self.sweep.stop()
        self.server.stop()
        self.server.wait()

    def _beat(self) -> None:
        while not self._stop.wait(self.conf.report_interval):
            try:
                with self.db.writer() as session:
                    services.heartbeat(session, self._service_id)
            except Exception:
                LOG.exception("Scheduler heartbeat failed")
