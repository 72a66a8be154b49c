"""Everything in one process: REST API, scheduler and volume worker over in-process RPC.

This is ``blockmgr serve`` without its command line, so tests and the REST API's own suite
can run the real stack in-process. The pieces are exactly the distributed ones (the same
client library, scheduler service, volume daemon and flows); only the transport differs:
``inprocess://`` (:mod:`blockmgr.rpc_inprocess`) hands messages between threads without
oslo.messaging's ``fake://`` polling delay.

Embedded defaults (:func:`embedded_config`): SQLite under ``[DEFAULT] state_path``, one
loopback backend whose volumes are sparse files under the same directory, and, for a
process that is not root, ``loopback_attach = file`` (attaching a loop device needs root).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid

from oslo_config import cfg

LOG = logging.getLogger(__name__)

EMBEDDED_BACKEND = "loopback"
EMBEDDED_TRANSPORT = "inprocess://blockmgr-serve"


def embedded_config(conf: cfg.ConfigOpts, state_dir: str | None = None) -> cfg.ConfigOpts:
    """Fill in what an all-in-one node needs and the operator did not configure.

    ``conf`` has been parsed (``register_all`` + command line). Only options the operator
    left unset are changed: the state directory (``state_dir`` wins when given), the
    transport (always in-process unless a ``transport_url`` was set), and, when no backend is
    enabled, one ``[loopback]`` backend. Backends are registered and the result validated.
    """
    from blockmgr.conf import backend
    from blockmgr.conf import validation

    if state_dir:
        conf.set_override("state_path", os.path.abspath(os.path.expanduser(state_dir)))
    os.makedirs(conf.state_path, mode=0o700, exist_ok=True)
    if not conf.transport_url:
        conf.set_override("transport_url", EMBEDDED_TRANSPORT)
    if not conf.enabled_backends:
        conf.set_override("enabled_backends", [EMBEDDED_BACKEND])
        conf.register_opts(backend.GENERIC_OPTS, group=EMBEDDED_BACKEND)
        conf.set_override("volume_driver", "loopback", group=EMBEDDED_BACKEND)
    backend.register_enabled_backends(conf)
    for name in conf.enabled_backends:
        section = conf[name]
        if (section.volume_driver == "loopback" and os.geteuid() != 0
                and "loopback_attach" in section and section.loopback_attach != "file"):
            LOG.info("Not running as root: backend %s hands out volume files instead of "
                     "attaching loop devices (loopback_attach = file)", name)
            conf.set_override("loopback_attach", "file", group=name)
    validation.validate(conf)
    return conf


class AllInOne:
    """One node running the scheduler, a volume worker per backend, and the REST app.

    Life cycle: :meth:`start` (migrates the database, starts the services, waits until every
    backend is serving or ``ready_timeout`` passes), then :attr:`app` can be served;
    :meth:`stop` stops consuming and leaves unfinished flows persisted for the next start.
    """

    def __init__(self, conf: cfg.ConfigOpts):
        from blockmgr import api
        from blockmgr import notifications
        from blockmgr import quota as bm_quota
        from blockmgr import rpc
        from blockmgr.db.session import Database
        from blockmgr.scheduler import service as sched_service
        from blockmgr.volume import service as volume_service

        self.conf = conf
        self.db = Database.from_config(conf, **volume_service.pool_options(conf))
        self.quota = bm_quota.QuotaEngine(self.db, conf)
        self.transport = rpc.get_transport(conf)
        self.notifier = notifications.Notifier(
            conf, conf.host, transport=rpc.get_notification_transport(conf))
        self._migrate()
        self.scheduler = sched_service.SchedulerService(
            conf, db=self.db, transport=self.transport, quota=self.quota,
            notifier=self.notifier)
        self.volumes = volume_service.VolumeDaemon(conf, db=self.db, transport=self.transport,
                                                   notifier=self.notifier)
        self.client = api.Client(conf, self.db, self.quota, transport=self.transport)
        self._app = None
        self._started = False
        self._lock = threading.Lock()

    def _migrate(self) -> None:
        """Create or upgrade blockmgr's schema and the flow logbook tables (first start)."""
        from blockmgr.db import migration
        from blockmgr.flows import engine as flow_engine

        migration.upgrade(self.db.engine)
        if (self.conf.flows.persistence_connection or "") != "memory":
            flow_engine.open_persistence(self.conf, self.db).close()

    @property
    def app(self):
        """The REST application (built on first use)."""
        if self._app is None:
            from blockmgr.api.rest import app as rest_app

            self._app = rest_app.create_app(self.conf, client=self.client, db=self.db,
                                            quota=self.quota)
        return self._app

    def start(self, ready_timeout: float = 60.0) -> bool:
        """Start the scheduler and the volume workers; True once every backend serves.

        A backend whose driver cannot be set up keeps retrying in the background (and shows
        as down in the service list); False is returned then, the node still runs.
        """
        with self._lock:
            if self._started:
                return self.volumes.wait_ready(0)
            self.scheduler.start()
            self.volumes.start()
            self._started = True
        ready = self.volumes.wait_ready(ready_timeout)
        if not ready:
            LOG.warning("Not every backend is serving after %.0f s; see the service list",
                        ready_timeout)
        return ready

    def stop(self, grace: float | None = None) -> bool:
        """Stop consuming; running flows get ``grace`` seconds (default
        ``graceful_shutdown_timeout``), the rest resume at the next start. True if drained."""
        grace = self.conf.graceful_shutdown_timeout if grace is None else grace
        with self._lock:
            if not self._started:
                self.db.dispose()
                return True
            self._started = False
        drained = self.volumes.stop(grace)
        try:
            self.scheduler.stop()
        except Exception:
            LOG.exception("Stopping the scheduler failed")
        self.transport.cleanup()
        self.db.dispose()
        return drained


def private_transport_url() -> str:
    """An in-process transport URL no other node in this process shares (tests)."""
    return "inprocess://node-%s" % uuid.uuid4().hex[:12]

