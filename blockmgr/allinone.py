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
#: ``[DEFAULT] host`` of an all-in-one node the operator did not name. The distributed
#: default (the machine's hostname) would orphan every volume of the state directory when
#: a laptop or container changes its hostname: rows and flows are keyed by ``host@backend``.
EMBEDDED_HOST = "local"


def embedded_config(conf: cfg.ConfigOpts, state_dir: str | None = None) -> cfg.ConfigOpts:
    """Fill in what an all-in-one node needs and the operator did not configure.

    ``conf`` has been parsed (``register_all`` + command line). Only options the operator
    left unset are changed: the state directory (``state_dir`` wins when given), the node's
    name (:data:`EMBEDDED_HOST`, stable across hostname changes), the transport (always in-process unless a ``transport_url`` was set), and, when no backend is
    enabled, one ``[loopback]`` backend. Backends are registered and the result validated.
    """
    from blockmgr.conf import backend
    from blockmgr.conf import validation

    if state_dir:
        conf.set_override("state_path", os.path.abspath(os.path.expanduser(state_dir)))
    os.makedirs(conf.state_path, mode=0o700, exist_ok=True)
    if not _configured(conf, "host"):
        conf.set_override("host", EMBEDDED_HOST)
    if not _configured(conf, "transport_url"):
        # oslo.messaging's own default is "rabbit://" (a broker on localhost), never wanted
        # here: only a URL the operator wrote puts the node on a broker.
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


def _configured(conf: cfg.ConfigOpts, name: str, group: str | None = None) -> bool:
    """Whether the operator set option ``name`` (config file, command line, override),
    as opposed to it holding a library's default."""
    location = conf.get_location(name, group)
    return location is not None and location.location not in (
        cfg.Locations.opt_default, cfg.Locations.set_default)


class AllInOne:
    """One node running the scheduler, a volume worker per backend, and the REST app.

    Life cycle: construction creates no schema and starts no thread; :meth:`start` creates
    or upgrades the schema, starts the scheduler and the volume workers (whose start resumes
    or reverts this node's unfinished flows *before* they consume; then each one runs the
    requests a previous run accepted and did not finish: blockmgr.ledger) and
    waits until every backend is serving or ``ready_timeout`` passes; then :attr:`app` can be
    served. :meth:`stop` -- after the caller stopped serving :attr:`app` -- stops placing,
    then stops the workers, and leaves flows still running after the grace period persisted
    for the next start.
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
            self._migrate()
            # The workers first: the scheduler asks them for their capacity at its start
            # and then places what the previous run left pending.
            self.volumes.start()
            self._started = True
        ready = self.volumes.wait_ready(ready_timeout)
        with self._lock:
            if self._started:
                self.scheduler.start()
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
        # The scheduler first: with nothing left to place, the workers' grace period is
        # spent on the requests they already run. A message either service had not taken
        # dies with the in-process broker; its request stays pending in the ledger and the
        # next start runs it (blockmgr.ledger).
        try:
            self.scheduler.stop()
        except Exception:
            LOG.exception("Stopping the scheduler failed")
        drained = self.volumes.stop(grace)
        self.transport.cleanup()
        self.db.dispose()
        return drained


def private_transport_url() -> str:
    """An in-process transport URL no other node in this process shares (tests)."""
    return "inprocess://node-%s" % uuid.uuid4().hex[:12]

