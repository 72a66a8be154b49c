"""``blockmgr-scheduler``: place volumes and groups on backends (``docs/scheduler.md``).

Usage: ``blockmgr-scheduler [--config-file FILE ...] [--config-dir DIR] [--version]``.
Runs until SIGTERM or SIGINT (stops consuming, finishes the requests being placed); SIGHUP
reloads log levels.
With ``[metrics] enabled`` it serves Prometheus metrics on ``[metrics] scheduler_port``, and
``GET /healthcheck`` there: 503 with a JSON body naming the check while the database or the
broker is unreachable (:mod:`blockmgr.health`).
Exit status 2: a configuration error (nothing started), e.g. the metrics port is taken.
"""

from __future__ import annotations

import signal
import sys
import threading

from oslo_config import cfg
from oslo_log import log as logging

LOG = logging.getLogger(__name__)


def _config(argv) -> cfg.ConfigOpts:
    """The global config from the command line, validated.

    A node's shared configuration file also holds the sections of the backends its volume
    workers serve (``[DEFAULT] enabled_backends``). The scheduler reads none of their options
    (it learns about backends from their capacity reports), so those sections are accepted
    without loading their drivers: a scheduler host needs no driver package. A section
    that ``enabled_backends`` does not list is still an error.
    """
    import blockmgr
    from blockmgr import conf as bm_conf
    from blockmgr.conf import validation

    conf = cfg.CONF
    conf.clear()
    bm_conf.register_all(conf)
    conf(argv, project="blockmgr", prog="blockmgr-scheduler", default_config_files=[],
         validate_default_values=True, version=blockmgr.__version__)
    validation.validate(conf, unchecked_sections=tuple(conf.enabled_backends))
    return conf


def main(argv=None) -> int:
    from blockmgr import cmd

    cmd.prepare_process()   # before oslo.messaging is imported
    from blockmgr import exception
    from blockmgr import health
    from blockmgr import logcontext
    from blockmgr import metrics
    from blockmgr import notifications
    from blockmgr import quota as bm_quota
    from blockmgr import rpc
    from blockmgr.db.session import Database
    from blockmgr.scheduler import service as sched_service

    try:
        conf = _config(sys.argv[1:] if argv is None else argv)
    except (cfg.Error, exception.ConfigurationError) as exc:
        print("blockmgr-scheduler: %s" % exc, file=sys.stderr)
        return 2
    logcontext.setup(conf, "blockmgr")
    db = Database.from_config(conf)
    transport = rpc.get_transport(conf)
    notifier = notifications.Notifier(conf, conf.host,
                                      transport=rpc.get_notification_transport(conf))
    service = sched_service.SchedulerService(
        conf, db=db, transport=transport, quota=bm_quota.QuotaEngine(db, conf),
        notifier=notifier)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGHUP, lambda *_: _reload_log_levels(conf))
    try:
        endpoint = metrics.serve(conf, "scheduler_port", service.metrics_collectors(),
                                 health=health.process_checks(conf, db))
    except exception.ConfigurationError as exc:
        LOG.error("blockmgr-scheduler cannot start: %s", exc)
        return 2
    service.start()
    from oslo_service import systemd

    systemd.notify_once()   # Type=notify: consuming
    while not done.wait(1.0):
        pass
    LOG.info("Stopping the scheduler")
    service.stop()
    if endpoint is not None:
        endpoint.stop()
    return 0


def _reload_log_levels(conf) -> None:
    try:
        conf.mutate_config_files()
    except Exception:
        LOG.exception("Reloading the configuration failed")


if __name__ == "__main__":
    sys.exit(main())
