"""``blockmgr-api``: the REST API daemon of a distributed deployment.

Usage: ``blockmgr-api [--config-file FILE ...] [--config-dir DIR] [--debug] [--version]``.

It serves the same application as ``blockmgr serve`` (:func:`blockmgr.api.rest.app.create_app`)
on ``[api] bind_host``:``bind_port``, over the configured message broker
(``[DEFAULT] transport_url``) and database (``[database] connection``). It runs no scheduler
and no volume worker: requests are written to the database and cast to
``blockmgr-scheduler`` / ``blockmgr-volume``, which run elsewhere (or in other processes).
Any number of API daemons can serve one deployment.

The schema is not created here: run ``blockmgr-manage db sync`` first (the daemon refuses to
start on a database whose schema is not the one this code expects, and says so).

Signals: ``SIGTERM`` / ``SIGINT`` stop accepting connections, let running requests finish
(up to :data:`blockmgr.cmd.listen.HTTP_SHUTDOWN_GRACE` seconds) and exit 0; ``SIGHUP``
reloads the log levels.

Exit status: 0 after a stop, 1 when it cannot start (port taken, broker or database
unusable), 2 for a configuration error.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from oslo_config import cfg

from blockmgr import exception

LOG = logging.getLogger(__name__)

PROG = "blockmgr-api"


def load_config(argv) -> cfg.ConfigOpts:
    """The global config from the command line; backend sections are registered too, so
    one config file can serve every daemon of a node."""
    import blockmgr
    from blockmgr import conf as bm_conf
    from blockmgr.conf import backend
    from blockmgr.conf import validation

    conf = cfg.CONF
    conf.clear()
    bm_conf.register_all(conf)
    conf(list(argv), project="blockmgr", prog=PROG, validate_default_values=True,
         version=blockmgr.__version__)
    backend.register_enabled_backends(conf)
    validation.validate(conf)
    if (conf.transport_url or "").startswith("inprocess://"):
        raise exception.ConfigurationError(
            section="DEFAULT", option="transport_url",
            reason="an in-process transport reaches no scheduler or volume worker from a "
                   "separate API process; point it at the deployment's broker "
                   "(rabbit://...), or run `blockmgr serve` for everything in one process")
    return conf


def check_schema(db) -> None:
    """:raises ServiceStartError: the database is unreachable or its schema is not at this
    code's revision (``blockmgr-manage db sync`` fixes the latter)."""
    from blockmgr.db import migration

    try:
        current = migration.current_revision(db.engine)
    except Exception as exc:
        raise exception.ServiceStartError(
            service=PROG, reason="cannot read the database %s: %s" % (
                _safe_url(db.url), exc)) from None
    head = migration.head_revision()
    if current != head:
        raise exception.ServiceStartError(
            service=PROG, reason="the database schema is at revision %s, this code needs %s; "
                                 "run `blockmgr-manage --config-file ... db sync`"
                                 % (current or "none (empty database)", head))


def _safe_url(url: str) -> str:
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparsable URL)"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    from blockmgr import cmd

    cmd.prepare_process()   # before oslo.messaging is imported
    try:
        conf = load_config(argv)
    except (cfg.Error, exception.BlockmgrError) as exc:
        print("%s: configuration error: %s" % (PROG, exc), file=sys.stderr)
        return 2
    from blockmgr import logcontext

    logcontext.setup(conf, "blockmgr")
    try:
        return _run(conf)
    finally:
        logging.shutdown()


def _run(conf) -> int:
    from blockmgr import api
    from blockmgr import quota as bm_quota
    from blockmgr import rpc
    from blockmgr.api.rest import app as rest_app
    from blockmgr.cmd import listen
    from blockmgr.db.session import Database

    host, port = conf.api.bind_host, conf.api.bind_port
    db = Database.from_config(conf)
    try:
        listen.check_address(host, port, PROG)
        check_schema(db)
    except exception.ServiceStartError as exc:
        LOG.error("%s", exc)
        print("ERROR: %s" % exc, file=sys.stderr)
        db.dispose()
        return 1

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: _reload_log_levels(conf))

    transport = rpc.get_transport(conf)
    quota = bm_quota.QuotaEngine(db, conf)
    client = api.Client(conf, db, quota, transport=transport)
    app = rest_app.create_app(conf, client=client, db=db, quota=quota)
    try:
        http = listen.start_http(app, host, port, PROG, access_log=True)
    except exception.ServiceStartError as exc:
        LOG.error("%s", exc)
        print("ERROR: %s" % exc, file=sys.stderr)
        transport.cleanup()
        db.dispose()
        return 1
    LOG.info("%s serving the REST API at %s (database %s)", PROG,
             listen.client_url(host, http.port), _safe_url(db.url))
    from oslo_service import systemd

    systemd.notify_once()   # Type=notify: listening

    status = 0
    while not stop.wait(0.5):
        if not http.running:
            LOG.error("The HTTP server ended unexpectedly; stopping")
            status = 1
            break
    LOG.info("Stopping: no new connections; running requests may finish")
    http.stop(listen.HTTP_SHUTDOWN_GRACE)
    transport.cleanup()
    db.dispose()
    LOG.info("%s stopped", PROG)
    return status


def _reload_log_levels(conf) -> None:
    try:
        conf.mutate_config_files()
    except Exception:
        LOG.exception("Reloading the configuration failed")


if __name__ == "__main__":
    sys.exit(main())
